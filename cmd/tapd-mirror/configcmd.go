package main

import (
	"context"
	"fmt"
)

func (m *Main) configCmd(_ context.Context, args []string) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(m.Stderr, "usage: tapd-mirror config check [--config FILE]")
		return usageError{fmt.Errorf("config: want the subcommand check")}
	}
	var c common
	fs := m.flags("config check", "Validate the config file and TAPD_MIRROR_* env vars and print the effective\nconfiguration with secrets masked. Exit code 1 when anything is wrong.", &c)
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	cfg, _, err := m.setup(c)
	fmt.Fprint(m.Stdout, cfg.Redacted())
	if err != nil {
		return err
	}
	if methods := cfg.TAPDAuthMethods(); len(methods) == 1 {
		fmt.Fprintln(m.Stdout, "TAPD auth: "+methods[0])
	}
	fmt.Fprintln(m.Stdout, "configuration OK")
	return nil
}
