package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// startForwarding delivers the integrity log to the forward: destinations,
// one goroutine each, until stop (README "Forwarding"). They only read the
// log, so a destination that is down never slows the sync or the API.
// status and replay are nil without destinations.
func startForwarding(ctx context.Context, cfg config.Config, st *storage.Store, log *slog.Logger, m *api.Metrics) (status api.ForwardStatus, replay api.ForwardReplay, stop func(), err error) {
	if len(cfg.Forward) == 0 {
		return nil, nil, func() {}, nil
	}
	fw, err := forward.New(forward.Options{Store: st, Destinations: cfg.Forward, Logger: log, Version: version})
	if err != nil {
		return nil, nil, nil, err
	}
	m.Register(fw.Collectors()...)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fw.Run(ctx)
	}()
	replay = func(ctx context.Context, name string, from int64, since time.Time) (forward.Replay, error) {
		return forward.ReplayFrom(ctx, st, fw.Names(), name, from, since)
	}
	return fw.Status, replay, func() { cancel(); <-done }, nil
}

// forwardCmd: tapd-mirror forward replay NAME --from INDEX | --since TIME.
// It only moves the cursor back in the database; the serve process
// forwarding to NAME resends from there before its next batch.
func (m *Main) forwardCmd(ctx context.Context, args []string) error {
	if err := m.wantSubcommand(args, "forward", "replay", "NAME --from INDEX | --since TIME [--config FILE]"); err != nil {
		return err
	}
	rest := args[1:]
	if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
		if len(rest) > 0 && isHelpFlag(rest[0]) {
			fmt.Fprintln(m.Stderr, "usage: tapd-mirror forward replay NAME --from INDEX | --since TIME [--config FILE]")
			return errHelp
		}
		return usageError{fmt.Errorf("forward replay: want the destination's NAME first")}
	}
	name := rest[0]
	var c common
	fs := m.flags("forward replay NAME", "Deliver destination NAME's events again from a log index (--from) or from the first\n"+
		"event at or after a time (--since, RFC3339 or Unix seconds): its cursor moves back, and\n"+
		"the serve process forwarding to it resends from there (duplicates carry their index).", &c)
	fromFlag := fs.Int64("from", -1, "log `index` to resend from (≥ 0, at most the destination's cursor)")
	sinceFlag := fs.String("since", "", "resend from the first event at or after this `time` (RFC3339 or Unix seconds)")
	if err := parse(fs, rest[1:]); err != nil {
		return err
	}
	since, err := parseTime("--since", *sinceFlag)
	if err != nil {
		return err
	}
	if (*fromFlag < 0) == since.IsZero() {
		return usageError{fmt.Errorf("forward replay: give exactly one of --from INDEX (≥ 0) or --since TIME")}
	}
	cfg, log, err := m.setup(c)
	if err != nil {
		return err
	}
	var names []string
	for _, f := range cfg.Forward {
		names = append(names, f.Name)
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	params := map[string]string{"name": name}
	if *fromFlag >= 0 {
		params["from"] = strconv.FormatInt(*fromFlag, 10)
	} else {
		params["since"] = *sinceFlag
	}
	entry := &storage.AccessEntry{Principal: cliUser(), SourceIP: "local", Action: "forward.replay", Params: params}
	rep, err := forward.ReplayFrom(storage.WithAccess(ctx, entry), st, names, name, *fromFlag, since)
	if err != nil {
		if entry.ID == 0 {
			recordCLI(ctx, st, log, "forward.replay", params, 0, err)
		}
		return err
	}
	fmt.Fprintf(m.Stdout, "destination %s: cursor moved from %d back to %d; serve resends from there before its next batch\n", rep.Name, rep.Previous, rep.From)
	return nil
}
