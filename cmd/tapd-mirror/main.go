// Command tapd-mirror mirrors TAPD's member activity log into a database the
// company owns and serves the merged history over the local Activity Log API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(runProgram(os.Args[1:], os.Stdout, os.Stderr))
}

// runProgram is main without os.Exit: the whole program with its signal
// handling and exit codes (0 ok or --help, 1 failed, 2 bad usage; sync adds
// 3 partial and 4 skipped, see synccmd.go). Tests run it in child processes
// to put two real processes on one database.
func runProgram(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := &Main{Stdout: stdout, Stderr: stderr, Getenv: os.Getenv}
	err := m.Run(ctx, args)
	if err != nil && !errors.Is(err, errHelp) {
		fmt.Fprintln(stderr, "tapd-mirror:", err)
	}
	return exitCode(err)
}

// exitCode is the process's exit code for what Run returned.
func exitCode(err error) int {
	var usage usageError
	var exit exitError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.As(err, &usage):
		return 2
	case errors.As(err, &exit):
		return exit.code
	default:
		return 1
	}
}
