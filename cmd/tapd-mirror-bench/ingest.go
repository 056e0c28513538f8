package main

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// countingTAPD counts member_activity_log calls.
type countingTAPD struct {
	syncer.TAPD
	calls atomic.Int64
}

func (c *countingTAPD) MemberActivityLog(ctx context.Context, q tapd.Query) (tapd.Page, error) {
	c.calls.Add(1)
	return c.TAPD.MemberActivityLog(ctx, q)
}

// newFake starts a fake TAPD whose one project holds about n records in the half year.
func newFake(n int) *tapdtest.Server {
	return tapdtest.New(tapdtest.Options{Seed: 7, Projects: 1, Months: 7, RecordsPerDay: max(1, n/182), CompanyRecordsPerDay: 1})
}

// freshStore opens a migrated, empty store of the dialect; close drops it.
func (b *bench) freshStore(ctx context.Context, dialect, name string) (*storage.Store, string, func(), error) {
	u, drop := "sqlite:"+b.tmp+"/"+name+".db", func() error { return nil }
	if dialect == config.Postgres {
		var err error
		if u, drop, err = createDatabase(b.adminURL); err != nil {
			return nil, "", nil, err
		}
	}
	st, err := storage.Open(ctx, u)
	if err != nil {
		drop()
		return nil, "", nil, err
	}
	if _, err := st.Migrate(ctx); err != nil {
		st.Close()
		drop()
		return nil, "", nil, err
	}
	return st, u, func() { st.Close(); drop() }, nil
}

func (b *bench) ingest(ctx context.Context) error {
	n := b.n(200_000)
	fake := newFake(n)
	defer fake.Close()
	user, pw := fake.Credentials()
	var rows [][]string
	var eff [][]string
	for _, dialect := range []string{config.Postgres, config.SQLite} {
		st, _, closeStore, err := b.freshStore(ctx, dialect, "ingest")
		if err != nil {
			return err
		}
		client, err := tapd.New(tapd.Options{BaseURL: fake.URL, APIUser: user, APIPassword: pw, RequestsPerMinute: -1, Logger: b.log})
		if err != nil {
			return err
		}
		counted := &countingTAPD{TAPD: client}
		ws, _ := config.ParseWorkspace(fake.Projects()[0].ID)
		s := syncer.New(syncer.Options{Store: st, TAPD: counted, Workspaces: []config.Workspace{ws},
			Now: fake.Now, Logger: b.log})
		start := time.Now()
		runs, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI, Full: true}, "")
		if err != nil {
			closeStore()
			return err
		}
		syncTook := time.Since(start)
		run := runs[0]
		backfillCalls := counted.calls.Load()

		// Steady state: ten quiet minutes later, one more run.
		fake.Advance(10 * time.Minute)
		before := counted.calls.Load()
		if _, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, ""); err != nil {
			closeStore()
			return err
		}
		steady := counted.calls.Load() - before
		fake.Advance(-10 * time.Minute)

		normalized, err := st.ListActivities(ctx, storage.Filter{Source: storage.SourceTAPD}, math.MaxInt32, 0)
		closeStore()
		if err != nil {
			return err
		}
		baseName, baseTook, err := b.baselineLoad(ctx, dialect, normalized)
		if err != nil {
			return err
		}
		syncRate := float64(run.Inserted) / syncTook.Seconds()
		baseRate := float64(len(normalized)) / baseTook.Seconds()
		rows = append(rows, []string{dialect, fmt.Sprint(run.Inserted), fmt.Sprintf("%.1f s", syncTook.Seconds()),
			fmt.Sprintf("%.0f", syncRate), baseName, fmt.Sprintf("%.0f", baseRate), ratio(syncRate, baseRate),
			"≥ 0.50", passFail(syncRate >= 0.5*baseRate)})
		if dialect == config.Postgres {
			floor := requestFloor(fake, run)
			eff = append(eff,
				[]string{"backfill", fmt.Sprint(backfillCalls), fmt.Sprint(floor), ratio(float64(backfillCalls), float64(floor)), "≤ 1.10", passFail(float64(backfillCalls) <= 1.1*float64(floor))},
				[]string{"steady state, no new records", fmt.Sprint(steady), "1", ratio(float64(steady), 1), "≤ 1 per workspace", passFail(steady <= 1)})
		}
	}
	fmt.Fprintf(b.out, "### 1. End-to-end sync ingest (%d records, loopback fake TAPD, page size 200, no quota)\n\n", n)
	fmt.Fprintln(b.out, "Sync = `syncer.RunAll --full` into an empty, migrated store (fetch, decode, normalize, upsert, reconcile, checkpoint).\nBaseline = the same normalized rows loaded into the same table: PostgreSQL `COPY` (lib/pq `pq.CopyIn`), SQLite one transaction of prepared `INSERT`s.")
	fmt.Fprintln(b.out)
	b.table([]string{"store", "records", "sync time", "sync rec/s", "baseline", "baseline rec/s", "ratio", "target", "result"}, rows)
	fmt.Fprintln(b.out, "### 2. TAPD request efficiency (same PostgreSQL run)")
	fmt.Fprintln(b.out)
	fmt.Fprintln(b.out, "Floor = Σ over the calendar-month windows of the backfill of max(1, ⌈records / 200⌉): the fewest requests TAPD's rules allow.")
	fmt.Fprintln(b.out)
	b.table([]string{"case", "requests", "floor", "ratio", "target", "result"}, eff)
	return nil
}

// requestFloor counts the minimum requests for run's span: one page per 200
// records of each calendar-month window, and at least one per window.
func requestFloor(fake *tapdtest.Server, run storage.SyncRun) int {
	perMonth := map[string]int{}
	months := []string{}
	for t := run.WindowStart.In(tapdtest.Shanghai); t.Before(run.WindowEnd); t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, tapdtest.Shanghai) {
		k := t.Format("2006-01")
		months = append(months, k)
		perMonth[k] = 0
	}
	ws := fake.Projects()[0].ID
	for _, r := range fake.Truth() {
		if r.Workspace == ws && !r.CompanyLevel && !r.Created.Before(run.WindowStart) && r.Created.Before(run.WindowEnd) {
			perMonth[r.Created.In(tapdtest.Shanghai).Format("2006-01")]++
		}
	}
	floor := 0
	for _, k := range months {
		floor += max(1, (perMonth[k]+199)/200)
	}
	return floor
}

// baselineLoad loads rows into a fresh table the fastest plain way the
// database offers and returns what it used and how long it took.
func (b *bench) baselineLoad(ctx context.Context, dialect string, rows []storage.Activity) (string, time.Duration, error) {
	st, _, closeStore, err := b.freshStore(ctx, dialect, "baseline")
	if err != nil {
		return "", 0, err
	}
	defer closeStore()
	db := st.DB()
	start := time.Now()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return "", 0, err
	}
	defer tx.Rollback()
	cols := []string{"platform", "serial", "action_type", "action_detail", "username", "timestamp", "source",
		"source_id", "workspace_id", "extra", "ingested_at"}
	name := "COPY"
	var stmtSQL string
	if dialect == config.Postgres {
		stmtSQL = pq.CopyIn("activity_log", cols...)
	} else {
		name = "INSERT (1 tx)"
		stmtSQL = `INSERT INTO activity_log (platform, serial, action_type, action_detail, username, timestamp, source,
			source_id, workspace_id, extra, ingested_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)`
	}
	stmt, err := tx.PrepareContext(ctx, stmtSQL)
	if err != nil {
		return "", 0, err
	}
	now := time.Now()
	for _, a := range rows {
		var ts, ing any = a.Timestamp, now
		if dialect == config.SQLite {
			ts, ing = a.Timestamp.Unix(), now.Unix()
		}
		if _, err := stmt.ExecContext(ctx, a.Platform, a.Serial, a.ActionType, a.ActionDetail, a.Username, ts,
			a.Source, a.SourceID, a.WorkspaceID, extraJSON(a.ExtraFields()), ing); err != nil {
			return "", 0, err
		}
	}
	if dialect == config.Postgres {
		if _, err := stmt.ExecContext(ctx); err != nil {
			return "", 0, err
		}
	}
	if err := stmt.Close(); err != nil {
		return "", 0, err
	}
	if err := tx.Commit(); err != nil {
		return "", 0, err
	}
	return name, time.Since(start), nil
}
