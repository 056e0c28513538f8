package main

import (
	"context"
	"fmt"
	"time"
)

// maintenance runs repairs an operator may need; rebuild-counts recomputes
// the daily and hourly counts from activity_log (every command that opens
// the database rebuilds them by itself after a timezone change; this is
// for a table edited by hand).
func (m *Main) maintenance(ctx context.Context, args []string) error {
	if err := m.wantSubcommand(args, "maintenance", "rebuild-counts", "[--config FILE]"); err != nil {
		return err
	}
	var c common
	fs := m.flags("maintenance rebuild-counts", "Recompute the per-day and per-hour counts that answer count queries, from activity_log, in one transaction.", &c)
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	cfg, log, err := m.setup(c)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	if err := st.RebuildCounts(ctx); err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "daily and hourly counts rebuilt in %s (timezone %s)\n", time.Since(start).Round(time.Millisecond), cfg.Timezone)
	return nil
}
