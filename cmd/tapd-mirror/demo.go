package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// demo runs the real server against an in-process fake TAPD: a first look
// that needs no TAPD account, no config and no network.
func (m *Main) demo(ctx context.Context, args []string) error {
	c := common{logFormat: "auto", logLevel: "info"}
	fs := m.flags("demo", "Start a fake TAPD (a company, 3 projects, 8 months of history, records that keep arriving),\n"+
		"mirror it into an embedded SQLite file as if the mirror had been started 6 weeks ago (so the\n"+
		"archive holds what TAPD has forgotten since) and serve the API. Ctrl-C stops it.", nil)
	listen := fs.String("listen", "127.0.0.1:50809", "API address")
	db := fs.String("db", "", "SQLite `file` to mirror into (default: a new file in a temp directory)")
	interval := fs.Duration("interval", 20*time.Second, "sync interval")
	fs.StringVar(&c.logFormat, "log-format", c.logFormat, "log format: text, json, or auto")
	fs.StringVar(&c.logLevel, "log-level", c.logLevel, "log level: debug, info, warn, error")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *db == "" {
		dir, err := os.MkdirTemp("", "tapd-mirror-demo-")
		if err != nil {
			return fmt.Errorf("creating demo directory: %w", err)
		}
		*db = filepath.Join(dir, "demo.db")
	}
	clock := &demoClock{}
	fake := tapdtest.New(tapdtest.Options{Seed: 2026, Clock: clock.now, Projects: 3, Months: 8,
		RecordsPerDay: 20, CompanyRecordsPerDay: 3})
	defer fake.Close()

	var token [32]byte // long enough for any listen address
	rand.Read(token[:])
	user, pw := fake.Credentials()
	cfg := config.Default()
	cfg.DatabaseURL = "sqlite:" + *db
	cfg.Listen = *listen
	cfg.AdminToken = hex.EncodeToString(token[:])
	cfg.TAPD.BaseURL, cfg.TAPD.APIUser, cfg.TAPD.APIPassword = fake.URL, user, pw
	cfg.TAPD.RequestsPerMinute = 6000 // the fake has no quota
	cfg.Sync.Workspaces = []string{"projects:" + fake.CompanyID(), "company:" + fake.CompanyID()}
	cfg.Sync.Interval = config.Duration{Duration: *interval}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	m.secrets = cfg.Secrets()
	log, err := newLogger(m.Stderr, c.logFormat, c.logLevel, m.secrets)
	if err != nil {
		return usageError{err}
	}
	log.Info("demo: fake TAPD started", "url", fake.URL, "company", fake.CompanyID(), "records", len(fake.Truth()),
		"database", *db)
	beyond, horizon, err := archiveHistory(ctx, cfg, log, clock)
	if err != nil {
		return err
	}
	fake.SetArrivals(1, 2*time.Minute) // from now on every request brings a new, slightly late record
	fake.SetFaults(0.03)               // and now and then TAPD misbehaves, as it does
	next := m.Listening
	demoMain := *m
	demoMain.Listening = func(addr string) {
		base := "http://" + addr
		fmt.Fprintf(m.Stdout, `
Console: %s/signin  (sign in with the admin token below)

tapd-mirror demo is serving %s (data: %s)
This archive was started %d weeks ago: it mirrored TAPD's half year as it was then, and kept up since.
%d records are older than TAPD's horizon: only this archive has them (TAPD answers from %s).
Records keep arriving; the mirror syncs every %s.

  curl '%s/api/v1/activity_log?platform=tapd&limit=5'
  curl '%s/api/v1/activity_log/count?platform=tapd'
  curl '%s/api/v1/activity_log/count?platform=tapd&until=%d'
  curl -H 'Authorization: Bearer %s' '%s/api/v1/sync/status'

`, base, base, *db, demoWeeks, beyond.Records, horizon.Format("2006-01-02 15:04"), *interval,
			base, base, base, horizon.Unix(), cfg.AdminToken, base)
		if next != nil {
			next(addr)
		}
	}
	return demoMain.runServer(ctx, cfg, log)
}

// demoAge (demoWeeks) is how long ago the demo's archive was started: its first sync
// saw TAPD's half year as it was then, so what has left TAPD since is in the
// archive only — as in a real install after a few weeks.
const (
	demoWeeks = 6
	demoAge   = demoWeeks * 7 * 24 * time.Hour
)

// demoClock is the clock of the fake TAPD and of the syncer that builds
// the demo's history: the real clock, set back by back.
type demoClock struct{ back atomic.Int64 }

func (c *demoClock) now() time.Time { return time.Now().Add(-time.Duration(c.back.Load())) }

// archiveHistory syncs the fake as it was demoAge ago (both clocks set
// back: TAPD then answered for weeks it no longer does), then as it is now,
// and signs the archive. It returns what only the archive holds now and
// TAPD's horizon.
func archiveHistory(ctx context.Context, cfg config.Config, log *slog.Logger, clock *demoClock) (storage.Beyond, time.Time, error) {
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return storage.Beyond{}, time.Time{}, err
	}
	defer st.Close()
	s, _, err := newSyncer(cfg, st, log, nil, clock.now)
	if err != nil {
		return storage.Beyond{}, time.Time{}, err
	}
	start := time.Now()
	clock.back.Store(int64(demoAge))
	if _, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, ""); err != nil {
		return storage.Beyond{}, time.Time{}, fmt.Errorf("demo: mirroring TAPD as it was %s ago: %w", demoAge, err)
	}
	clock.back.Store(0)
	if _, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, ""); err != nil {
		return storage.Beyond{}, time.Time{}, fmt.Errorf("demo: mirroring TAPD as it is now: %w", err)
	}
	if err := signAfterSync(ctx, cfg, st, log); err != nil {
		return storage.Beyond{}, time.Time{}, fmt.Errorf("demo: signing the integrity checkpoint: %w", err)
	}
	horizon := s.Horizon()
	beyond, err := st.RecordsBeyond(ctx, horizon)
	log.Info("demo: archive built as if started weeks ago", "weeks", demoWeeks,
		"beyond_horizon", beyond.Records, "horizon", horizon, "took", time.Since(start).Round(time.Millisecond))
	return beyond, horizon, err
}
