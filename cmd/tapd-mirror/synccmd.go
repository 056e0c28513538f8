package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
)

// Exit codes of a one-shot sync, besides 0 (every target synced, no gap
// left), 1 (a run failed, or the command could not run) and 2 (bad usage).
// The worst applies: 1, then 3, then 4.
const (
	exitPartial = 3 // every run finished, some left gaps (see the warnings and GET /api/v1/sync/status)
	exitSkipped = 4 // some target was held by another live process; --wait waits for it instead
)

func (m *Main) sync(ctx context.Context, args []string) error {
	var c common
	fs := m.flags("sync", "Sync the configured TAPD workspaces once, then exit. Progress goes to stderr, a summary\n"+
		"of every target to stdout. Exit code: 0 all synced, 1 a run failed, 3 some runs left gaps (partial),\n"+
		"4 some target was skipped (held by another process; see --wait).", &c)
	workspace := fs.String("workspace", "", "sync only this `ID` (a configured key such as 10074561 or company:2001, or a project of a projects:ID entry)")
	full := fs.Bool("full", false, "re-fetch TAPD's whole half year instead of resuming from the checkpoint")
	since := fs.String("since", "", "re-fetch from this RFC3339 `time` (clipped to TAPD's half year)")
	wait := fs.Bool("wait", false, "wait for targets another live process is syncing, instead of skipping them")
	if err := parse(fs, args); err != nil {
		return err
	}
	ro := syncer.RunOptions{Trigger: syncer.TriggerCLI, Full: *full, WaitForLease: *wait}
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
	s, _, err := newSyncer(cfg, st, log, nil, m.Clock)
	if err != nil {
		return err
	}
	rep, err := s.Sync(ctx, ro, *workspace)
	if serr := signAfterSync(ctx, cfg, st, log); serr != nil { // the runs' changes, signed
		err = errors.Join(err, fmt.Errorf("signing the integrity checkpoint: %w", serr))
	}
	partial := m.printSyncSummary(rep)
	switch {
	case err != nil:
		return err
	case partial > 0:
		return exitError{exitPartial, fmt.Errorf("%d of %d workspaces left gaps (partial; see the warnings above and GET /api/v1/sync/status)",
			partial, len(rep.Targets))}
	case len(rep.Skipped) > 0:
		return exitError{exitSkipped, fmt.Errorf("%d of %d workspaces skipped: held by another process (sync --wait waits for them)",
			len(rep.Skipped), len(rep.Targets))}
	}
	return nil
}

// printSyncSummary writes one line per target asked for and returns how many
// runs ended partial.
func (m *Main) printSyncSummary(rep syncer.Report) (partial int) {
	runs := map[string]storage.SyncRun{}
	for _, r := range rep.Runs {
		runs[r.Workspace] = r
	}
	skipped := map[string]*syncer.BusyError{}
	for _, b := range rep.Skipped {
		skipped[b.Target] = b
	}
	fmt.Fprintf(m.Stdout, "%-14s %-9s %8s %8s %8s %8s %8s %s\n", "WORKSPACE", "OUTCOME", "REQUESTS", "FETCHED", "INSERTED", "UPDATED", "REMOTE", "TOOK")
	for _, t := range rep.Targets {
		r, ran := runs[t.Key]
		switch {
		case ran:
			if r.Outcome == storage.OutcomePartial {
				partial++
			}
			fmt.Fprintf(m.Stdout, "%-14s %-9s %8d %8d %8d %8d %8d %s\n", r.Workspace, r.Outcome, r.Requests, r.Fetched,
				r.Inserted, r.Updated, r.RemoteTotal, r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
		case skipped[t.Key] != nil:
			fmt.Fprintf(m.Stdout, "%-14s skipped (%s)\n", t.Key, heldBy(skipped[t.Key]))
		case rep.Failed[t.Key] != nil:
			fmt.Fprintf(m.Stdout, "%-14s failed to start: %v\n", t.Key, rep.Failed[t.Key])
		default:
			fmt.Fprintf(m.Stdout, "%-14s not run\n", t.Key)
		}
	}
	return partial
}

// heldBy says who holds a skipped target: "held by HOST:PID until T".
func heldBy(b *syncer.BusyError) string {
	if b.InProcess {
		return "already running in this process"
	}
	who := b.Lease.Process
	if o := b.Lease.Owner; o.Host != "" && o.PID > 0 {
		who = o.Host + ":" + strconv.Itoa(o.PID)
	}
	return "held by " + who + " until " + b.Lease.ExpiresAt.Format(time.RFC3339)
}
