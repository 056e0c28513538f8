package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// demo runs the real server against an in-process fake TAPD: a first look
// that needs no TAPD account, no config and no network.
func (m *Main) demo(ctx context.Context, args []string) error {
	c := common{logFormat: "auto", logLevel: "info"}
	fs := m.flags("demo", "Start a fake TAPD (a company, 3 projects, 8 months of history, records that keep arriving),\nmirror it into an embedded SQLite file and serve the API. Ctrl-C stops it.", nil)
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
	fake := tapdtest.New(tapdtest.Options{Seed: 2026, Clock: time.Now, Projects: 3, Months: 8,
		RecordsPerDay: 20, CompanyRecordsPerDay: 3})
	defer fake.Close()
	fake.SetArrivals(1, 2*time.Minute) // every request brings a new, slightly late record
	fake.SetFaults(0.03)               // and now and then TAPD misbehaves, as it does

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
	next := m.Listening
	demoMain := *m
	demoMain.Listening = func(addr string) {
		base := "http://" + addr
		fmt.Fprintf(m.Stdout, `
Console: %s/signin  (sign in with the admin token below)

tapd-mirror demo is serving %s (data: %s)
The first sync backfills TAPD's half year; records keep arriving every %s.

  curl '%s/api/v1/activity_log?platform=tapd&limit=5'
  curl '%s/api/v1/activity_log/count?platform=tapd'
  curl -H 'Authorization: Bearer %s' '%s/api/v1/sync/status'

`, base, base, *db, *interval, base, base, cfg.AdminToken, base)
		if next != nil {
			next(addr)
		}
	}
	return demoMain.runServer(ctx, cfg, log)
}
