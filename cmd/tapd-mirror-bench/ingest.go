package main

import (
	"context"
	"fmt"
	"math"
	"sync"
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
	var rows [][]string
	var eff [][]string
	for _, dialect := range []string{config.Postgres, config.SQLite} {
		var best, baseBest float64
		var inserted int
		var syncTook time.Duration
		var baseName string
		for round := range ingestRounds {
			r, err := b.ingestRound(ctx, fake, dialect, round)
			if err != nil {
				return err
			}
			if rate := float64(r.run.Inserted) / r.took.Seconds(); rate > best {
				best, inserted, syncTook = rate, r.run.Inserted, r.took
			}
			baseBest, baseName = max(baseBest, r.baseRate), r.baseName
			if round == 0 && dialect == config.Postgres {
				floor := requestFloor(fake, r.run)
				eff = append(eff,
					[]string{"backfill", fmt.Sprint(r.backfillCalls), fmt.Sprint(floor), ratio(float64(r.backfillCalls), float64(floor)), "≤ 1.10", passFail(float64(r.backfillCalls) <= 1.1*float64(floor))},
					[]string{"steady state, no new records", fmt.Sprint(r.steady), "1", ratio(float64(r.steady), 1), "≤ 1 per workspace", passFail(r.steady <= 1)})
			}
		}
		rows = append(rows, []string{dialect, fmt.Sprint(inserted), fmt.Sprintf("%.1f s", syncTook.Seconds()),
			fmt.Sprintf("%.0f", best), baseName, fmt.Sprintf("%.0f", baseBest), ratio(best, baseBest),
			"≥ 0.50", passFail(best >= 0.5*baseBest)})
	}
	fmt.Fprintf(b.out, "### 1. End-to-end sync ingest (%d records, loopback fake TAPD, page size 200, no quota)\n\n", n)
	fmt.Fprintf(b.out, "Sync = `syncer.RunAll --full` into an empty, migrated store (fetch, decode, normalize, upsert, reconcile, checkpoint).\nBaseline = the same normalized rows loaded into the same table: PostgreSQL `COPY` (lib/pq `pq.CopyIn`), SQLite one transaction of prepared `INSERT`s.\n"+
		"%d rounds of each, alternating, fresh databases, on PostgreSQL a `CHECKPOINT` before each; the best rate of each side counts (the machine is shared: the best is the least disturbed).\n", ingestRounds)
	fmt.Fprintln(b.out)
	b.table([]string{"store", "records", "sync time", "sync rec/s", "baseline", "baseline rec/s", "ratio", "target", "result"}, rows)
	fmt.Fprintln(b.out, "### 2. TAPD request efficiency (same PostgreSQL run)")
	fmt.Fprintln(b.out)
	fmt.Fprintln(b.out, "Floor = Σ over the calendar-month windows of the backfill of max(1, ⌈records / 200⌉): the fewest requests TAPD's rules allow.")
	fmt.Fprintln(b.out)
	b.table([]string{"case", "requests", "floor", "ratio", "target", "result"}, eff)
	return nil
}

// ingestRounds is how many times each side of the ingest ratio is measured.
const ingestRounds = 3

// ingestResult is one round of the ingest step on one database.
type ingestResult struct {
	run           storage.SyncRun
	took          time.Duration
	backfillCalls int64
	steady        int64 // requests of a quiet run ten minutes later
	baseName      string
	baseRate      float64 // rows/s of the baseline load of the same rows
}

// ingestRound syncs the fake's project into a fresh store, then (first
// round) measures a quiet run's requests, then loads the same normalized
// rows the baseline's way into another fresh store.
func (b *bench) ingestRound(ctx context.Context, fake *tapdtest.Server, dialect string, round int) (ingestResult, error) {
	var r ingestResult
	st, _, closeStore, err := b.freshStore(ctx, dialect, fmt.Sprint("ingest-", round))
	if err != nil {
		return r, err
	}
	closeStore = sync.OnceFunc(closeStore)
	defer closeStore()
	s, counted, err := b.syncerFor(st, fake, -1, fake.Projects()[0].ID)
	if err != nil {
		return r, err
	}
	if err := settle(ctx, st); err != nil {
		return r, err
	}
	start := time.Now()
	runs, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI, Full: true}, "")
	if err != nil {
		return r, err
	}
	r.took, r.run, r.backfillCalls = time.Since(start), runs[0], counted.calls.Load()
	if round == 0 {
		// Steady state: ten quiet minutes later, one more run.
		fake.Advance(10 * time.Minute)
		before := counted.calls.Load()
		_, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
		fake.Advance(-10 * time.Minute)
		if err != nil {
			return r, err
		}
		r.steady = counted.calls.Load() - before
	}
	normalized, err := st.ListActivities(ctx, storage.Filter{Source: storage.SourceTAPD}, math.MaxInt32, 0)
	if err != nil {
		return r, err
	}
	closeStore()
	name, took, err := b.baselineLoad(ctx, dialect, fmt.Sprint("baseline-", round), normalized)
	if err != nil {
		return r, err
	}
	r.baseName, r.baseRate = name, float64(len(normalized))/took.Seconds()
	return r, nil
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
func (b *bench) baselineLoad(ctx context.Context, dialect, store string, rows []storage.Activity) (string, time.Duration, error) {
	st, _, closeStore, err := b.freshStore(ctx, dialect, store)
	if err != nil {
		return "", 0, err
	}
	defer closeStore()
	db := st.DB()
	if err := settle(ctx, st); err != nil {
		return "", 0, err
	}
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
