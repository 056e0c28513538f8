package main

import (
	"context"
	"fmt"

	"github.com/tapd-mirror/tapd-mirror/forward"
)

func (m *Main) configCmd(_ context.Context, args []string) error {
	if err := m.wantSubcommand(args, "config", "check", "[--config FILE]"); err != nil {
		return err
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
	// Files serve reads at start (TLS certificates): missing or unreadable
	// ones fail here too, not only when serve starts.
	if err := forward.CheckFiles(cfg.Forward); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	if methods := cfg.TAPDAuthMethods(); len(methods) == 1 {
		fmt.Fprintln(m.Stdout, "TAPD auth: "+methods[0])
	}
	fmt.Fprintln(m.Stdout, "configuration OK")
	return nil
}
