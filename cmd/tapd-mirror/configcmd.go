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
	if err == nil {
		// Files serve reads at start (TLS certificates): missing or
		// unreadable ones fail here too, not only when serve starts.
		if ferr := forward.CheckFiles(cfg.Forward); ferr != nil {
			err = fmt.Errorf("invalid configuration:\n%w", ferr)
		}
	}
	if err != nil {
		// The last line of stdout says so too: a script reading only
		// stdout, or its top, must not take the dump for a pass.
		fmt.Fprintln(m.Stdout, "configuration INVALID (the problems are on stderr)")
		return err
	}
	if methods := cfg.TAPDAuthMethods(); len(methods) == 1 {
		fmt.Fprintln(m.Stdout, "TAPD auth: "+methods[0])
	}
	fmt.Fprintln(m.Stdout, "configuration OK")
	return nil
}
