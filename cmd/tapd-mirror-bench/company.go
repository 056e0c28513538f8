package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// company measures TAPD requests for a company of 200 projects synced as
// one stream per project (projects:ID,company:ID) and as one company-wide
// stream (all:ID), each against its floor, and how fresh small targets stay
// while a big backfill runs under a tight quota.
func (b *bench) company(ctx context.Context) error {
	fmt.Fprintln(b.out, "### 6. TAPD at company scale (PostgreSQL, loopback fake TAPD)")
	fmt.Fprintln(b.out)
	fmt.Fprintln(b.out, "Floor = Σ over the calendar-month windows of each stream of max(1, ⌈records / 200⌉); an idle poll's floor is one request per stream.")
	fmt.Fprintln(b.out)
	var rows [][]string
	for _, entries := range [][]string{{"projects:2001", "company:2001"}, {"all:2001"}} {
		r, err := b.companyRequests(ctx, entries...)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	b.table([]string{"configuration", "case", "requests", "floor", "ratio", "target", "result"}, rows)
	fresh, err := b.freshnessUnderBackfill(ctx)
	if err != nil {
		return err
	}
	b.table([]string{"case", "measured", "target", "result"}, fresh)
	return nil
}

const companyProjects = 200

func (b *bench) companyRequests(ctx context.Context, entries ...string) ([][]string, error) {
	fake := tapdtest.New(tapdtest.Options{Seed: 21, Projects: companyProjects, Months: 7, RecordsPerDay: b.n(1), CompanyRecordsPerDay: 2})
	defer fake.Close()
	st, _, closeStore, err := b.freshStore(ctx, config.Postgres, "company")
	if err != nil {
		return nil, err
	}
	defer closeStore()
	s, counted, err := b.syncerFor(st, fake, -1, entries...)
	if err != nil {
		return nil, err
	}
	runs, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
	if err != nil {
		return nil, err
	}
	backfill := counted.calls.Load()
	streams := len(runs)
	floor := 0
	truth := fake.Truth()
	for _, run := range runs {
		_, f := streamFloor(truth, run.Workspace, run.WindowStart, run.WindowEnd)
		floor += f
	}
	fake.Advance(10 * time.Minute)
	before := counted.calls.Load()
	if _, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, ""); err != nil {
		return nil, err
	}
	idle := counted.calls.Load() - before
	name := fmt.Sprintf("`%v` (%d streams)", entries, streams)
	return [][]string{
		{name, "first backfill", fmt.Sprint(backfill), fmt.Sprint(floor), ratio(float64(backfill), float64(floor)), "≤ 1.10 (+ one-time probes)", passFail(float64(backfill) <= 1.1*float64(floor)+4)},
		{name, "idle poll", fmt.Sprint(idle), fmt.Sprint(streams), ratio(float64(idle), float64(streams)), "= streams", passFail(int(idle) <= streams)},
	}, nil
}

// streamFloor is the fewest requests TAPD's rules allow for reading one
// stream's records in [from, to): per calendar month of TAPD's zone (a query
// may not cross months), max(1, ⌈records / 200⌉). It also returns how many
// records that is.
func streamFloor(truth []tapdtest.Record, key string, from, to time.Time) (records, floor int) {
	perMonth := map[string]int{}
	for t := from.In(tapdtest.Shanghai); t.Before(to); t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, tapdtest.Shanghai) {
		perMonth[t.Format("2006-01")] = 0
	}
	for _, r := range truth {
		if r.Created.Before(from) || !r.Created.Before(to) || !inStream(key, r) {
			continue
		}
		perMonth[r.Created.In(tapdtest.Shanghai).Format("2006-01")]++
		records++
	}
	for _, n := range perMonth {
		floor += max(1, (n+199)/200)
	}
	return records, floor
}

// inStream says whether a fake record belongs to the stream (target key).
func inStream(key string, r tapdtest.Record) bool {
	switch {
	case key == "all:2001":
		return !r.CompanyLevel
	case key == "company:2001":
		return r.CompanyLevel
	}
	return !r.CompanyLevel && r.Workspace == key
}

// freshnessUnderBackfill runs one target's 50 000-record backfill under a
// quota of 60 requests a minute, scaled ×20 in time (1200/min, 10-minute
// intervals become 30 s), while four small targets receive new records; it
// reports how stale each small target got, in intervals.
func (b *bench) freshnessUnderBackfill(ctx context.Context) ([][]string, error) {
	const speedup = 20
	interval := 10 * time.Minute / speedup
	fake := tapdtest.New(tapdtest.Options{Seed: 22, Projects: 5, Months: 7, RecordsPerDay: 1, CompanyRecordsPerDay: 1})
	defer fake.Close()
	big := fake.Projects()[0].ID
	perDay := b.n(50_000) / 180
	for d := range 180 {
		fake.AddRecords(big, fake.Now().AddDate(0, 0, -d-1), perDay)
	}
	st, _, closeStore, err := b.freshStore(ctx, config.Postgres, "fresh")
	if err != nil {
		return nil, err
	}
	defer closeStore()
	s, _, err := b.syncerFor(st, fake, 60*speedup, "projects:2001")
	if err != nil {
		return nil, err
	}
	targets, err := s.Targets(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range targets[1:] { // the small ones were synced before
		if _, err := s.RunTarget(ctx, t, syncer.RunOptions{Trigger: syncer.TriggerCLI}); err != nil {
			return nil, err
		}
	}
	bigCtx, stopBig := context.WithCancel(ctx)
	defer stopBig()
	bigDone := make(chan struct{})
	go func() {
		defer close(bigDone)
		s.RunTarget(bigCtx, targets[0], syncer.RunOptions{Trigger: syncer.TriggerSchedule}) //nolint:errcheck // measured by the small ones
	}()
	var mu sync.Mutex
	worst := time.Duration(0)
	rounds, bigFinished := 0, false
	for rounds < 6 && !bigFinished {
		select {
		case <-bigDone:
			bigFinished = true
			continue
		default:
		}
		start := time.Now()
		for _, t := range targets[1:] {
			fake.AddRecords(t.WorkspaceID, fake.Now().Add(-2*time.Minute), 1)
		}
		var wg sync.WaitGroup
		for _, t := range targets[1:] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.RunTarget(ctx, t, syncer.RunOptions{Trigger: syncer.TriggerSchedule}); err == nil {
					mu.Lock()
					worst = max(worst, time.Since(start))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		rounds++
		time.Sleep(max(0, interval-time.Since(start)))
	}
	stopBig()
	<-bigDone
	stale := float64(worst) / float64(interval)
	how := "the backfill was still running at the end"
	if bigFinished {
		how = "the backfill finished first"
	}
	return [][]string{{fmt.Sprintf("small targets: worst time from new records to mirrored, in intervals, during a %d-record backfill of another target (quota 60/min and 10-min intervals, both scaled ×%d; %d rounds of 4 targets; %s)",
		perDay*180, speedup, rounds, how), fmt.Sprintf("%.2f", stale), "≤ 2 intervals", passFail(stale <= 2)}}, nil
}
