package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tapd-mirror/tapd-mirror/syncer"
)

func (m *Main) sync(ctx context.Context, args []string) error {
	var c common
	fs := m.flags("sync", "Sync the configured TAPD workspaces once, then exit. Progress goes to stderr;\nthe exit code is non-zero if any workspace failed.", &c)
	workspace := fs.String("workspace", "", "sync only this `ID` (a configured key such as 10074561 or company:2001, or a project of a projects:ID entry)")
	full := fs.Bool("full", false, "re-fetch TAPD's whole half year instead of resuming from the checkpoint")
	since := fs.String("since", "", "re-fetch from this RFC3339 `time` (clipped to TAPD's half year)")
	if err := parse(fs, args); err != nil {
		return err
	}
	ro := syncer.RunOptions{Trigger: syncer.TriggerCLI, Full: *full}
	if *since != "" {
		t, err := time.Parse(time.RFC3339, *since)
		if err != nil {
			return usageError{fmt.Errorf("--since %q is not RFC3339 (e.g. 2026-06-01T00:00:00+08:00)", *since)}
		}
		ro.Since = t
	}
	cfg, log, err := m.setup(c)
	if err != nil {
		return err
	}
	if len(cfg.Sync.Workspaces) == 0 {
		return errors.New("nothing to sync: set sync.workspaces (TAPD_MIRROR_WORKSPACES)")
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	s, _, err := newSyncer(cfg, st, log, nil, nil)
	if err != nil {
		return err
	}
	runs, err := s.RunAll(ctx, ro, *workspace)
	if serr := signAfterSync(ctx, cfg, st, log); serr != nil { // the runs' changes, signed
		err = errors.Join(err, fmt.Errorf("signing the integrity checkpoint: %w", serr))
	}
	fmt.Fprintf(m.Stdout, "%-14s %-9s %8s %8s %8s %8s %8s %s\n", "WORKSPACE", "OUTCOME", "REQUESTS", "FETCHED", "INSERTED", "UPDATED", "REMOTE", "TOOK")
	for _, r := range runs {
		fmt.Fprintf(m.Stdout, "%-14s %-9s %8d %8d %8d %8d %8d %s\n", r.Workspace, r.Outcome, r.Requests, r.Fetched,
			r.Inserted, r.Updated, r.RemoteTotal, r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
	}
	return err
}
