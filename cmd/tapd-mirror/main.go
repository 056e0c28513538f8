// Command tapd-mirror mirrors TAPD's member activity log into a database the
// company owns and serves the merged history over the local Activity Log API.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := &Main{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	if err := m.Run(ctx, os.Args[1:]); err != nil {
		var usage usageError
		if errors.As(err, &usage) {
			fmt.Fprintln(os.Stderr, "tapd-mirror:", err)
			os.Exit(2)
		}
		if !errors.Is(err, errHelp) {
			fmt.Fprintln(os.Stderr, "tapd-mirror:", err)
			os.Exit(1)
		}
	}
}
