package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// scale measures the sync engine at company scale (PostgreSQL): requests
// per target per interval in steady state, settle checks included, and the
// API's list/count latency while 100 targets sync, against idle.
func (b *bench) syncAtScale(ctx context.Context) error {
	fmt.Fprintln(b.out, "### 5. Sync at scale (PostgreSQL, loopback fake TAPD)")
	fmt.Fprintln(b.out)
	steady, err := b.steadyState(ctx)
	if err != nil {
		return err
	}
	rows := steady
	// At TAPD's default quota (what production sees: the limiter is shared by
	// all runs), judged; at ten times it, for information: on 2 cores the
	// in-process fake TAPD's JSON encoding then competes for the CPU too.
	for _, pace := range []int{60, 600} {
		busy, err := b.apiWhileSyncing(ctx, pace, pace == 60)
		if err != nil {
			return err
		}
		rows = append(rows, busy...)
	}
	b.table([]string{"case", "measured", "baseline", "ratio", "target", "result"}, rows)
	return nil
}

// syncerFor builds a syncer over st and the fake, its TAPD client paced at
// perMinute (< 0: unpaced).
func (b *bench) syncerFor(st *storage.Store, fake *tapdtest.Server, perMinute int, entries ...string) (*syncer.Syncer, *countingTAPD, error) {
	return b.syncerWith(st, fake, perMinute, nil, entries...)
}

// syncerWith is syncerFor with mod (if not nil) applied to the options.
func (b *bench) syncerWith(st *storage.Store, fake *tapdtest.Server, perMinute int, mod func(*syncer.Options), entries ...string) (*syncer.Syncer, *countingTAPD, error) {
	user, pw := fake.Credentials()
	client, err := tapd.New(tapd.Options{BaseURL: fake.URL, APIUser: user, APIPassword: pw, RequestsPerMinute: perMinute, Logger: b.log})
	if err != nil {
		return nil, nil, err
	}
	var ws []config.Workspace
	for _, e := range entries {
		w, err := config.ParseWorkspace(e)
		if err != nil {
			return nil, nil, err
		}
		ws = append(ws, w)
	}
	counted := &countingTAPD{TAPD: client}
	o := syncer.Options{Store: st, TAPD: counted, Workspaces: ws, Now: fake.Now, Logger: b.log}
	if mod != nil {
		mod(&o)
	}
	return syncer.New(o), counted, nil
}

// steadyState backfills 20 small projects, then simulates 6 hours of
// 10-minute intervals with a few new records each, settle checks (hourly)
// included, and counts TAPD requests per target per interval.
func (b *bench) steadyState(ctx context.Context) ([][]string, error) {
	const targets, intervals = 20, 36
	fake := tapdtest.New(tapdtest.Options{Seed: 11, Projects: targets, Months: 7, RecordsPerDay: 10, CompanyRecordsPerDay: 1})
	defer fake.Close()
	st, _, closeStore, err := b.freshStore(ctx, config.Postgres, "steady")
	if err != nil {
		return nil, err
	}
	defer closeStore()
	s, counted, err := b.syncerFor(st, fake, -1, "projects:2001")
	if err != nil {
		return nil, err
	}
	if _, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, ""); err != nil {
		return nil, err
	}
	before := counted.calls.Load()
	for i := range intervals {
		fake.Advance(10 * time.Minute)
		for j, p := range fake.Projects() {
			if (i+j)%3 == 0 { // a third of the projects see activity each interval
				fake.AddRecords(p.ID, fake.Now().Add(-2*time.Minute), 2)
			}
		}
		if _, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerSchedule}, ""); err != nil {
			return nil, err
		}
	}
	perTarget := float64(counted.calls.Load()-before) / float64(targets*intervals)
	return [][]string{{fmt.Sprintf("steady state: requests per target per 10-min interval (%d targets, %d intervals = 6 h, hourly settle checks over 48 h)", targets, intervals),
		fmt.Sprintf("%.3f", perTarget), "1", fmt.Sprintf("%.2f", perTarget), "≤ 1.2", passFail(perTarget <= 1.2)}}, nil
}

// apiWhileSyncing measures list and count p50 over HTTP, idle and while a
// full resync of 100 targets runs (4 at a time), on the same data. What it
// proves: no API request waits on a connection or lock held by a sync.
func (b *bench) apiWhileSyncing(ctx context.Context, pace int, judged bool) ([][]string, error) {
	fake := tapdtest.New(tapdtest.Options{Seed: 12, Projects: 100, Months: 7, RecordsPerDay: b.n(8), CompanyRecordsPerDay: 1})
	defer fake.Close()
	st, _, closeStore, err := b.freshStore(ctx, config.Postgres, "busy")
	if err != nil {
		return nil, err
	}
	defer closeStore()
	s, _, err := b.syncerFor(st, fake, -1, "projects:2001")
	if err != nil {
		return nil, err
	}
	if _, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, ""); err != nil {
		return nil, err
	}
	paced, _, err := b.syncerFor(st, fake, pace, "projects:2001")
	if err != nil {
		return nil, err
	}
	handler := api.New(api.Options{Store: st, Logger: b.log})
	defer handler.Close() // the access trail's writer, before the store closes
	web := httptest.NewServer(handler.Handler())
	defer web.Close()
	list := func() error { return httpGet(ctx, web.URL+"/api/v1/activity_log?limit=100") }
	count := func() error { return httpGet(ctx, web.URL+"/api/v1/activity_log/count?platform=tapd") }
	const iters = 200
	idleList, err := measure(iters, list)
	if err != nil {
		return nil, err
	}
	idleCount, err := measure(iters, count)
	if err != nil {
		return nil, err
	}
	resyncCtx, stopResync := context.WithCancel(ctx)
	defer stopResync()
	done := make(chan error, 1)
	go func() {
		_, err := paced.RunAll(resyncCtx, syncer.RunOptions{Trigger: syncer.TriggerCLI, Full: true}, "")
		done <- err
	}()
	time.Sleep(2 * time.Second)
	busyList, err := measure(iters, list)
	if err != nil {
		return nil, err
	}
	busyCount, err := measure(iters, count)
	if err != nil {
		return nil, err
	}
	note := ""
	select {
	case <-done:
		note = " (**the resync ended before the measurement did**)"
	default:
		stopResync()
		<-done // canceled: its runs record "canceled"
	}
	row := func(name string, busy, idle latencies) []string {
		target, result := "≤ 2× idle", passFail(busy.p50 <= 2*idle.p50)
		if !judged {
			target, result = "(information)", "—"
		}
		return []string{name + note, ms(busy.p50), ms(idle.p50) + " idle", ratio(float64(busy.p50), float64(idle.p50)), target, result}
	}
	return [][]string{
		row(fmt.Sprintf("list p50 while 100 targets resync `--full`, 4 at a time, TAPD paced at %d req/min (%d iterations)", pace, iters), busyList, idleList),
		row(fmt.Sprintf("count p50, same, %d req/min (%d iterations)", pace, iters), busyCount, idleCount),
	}, nil
}
