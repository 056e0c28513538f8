package syncer_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

func TestOneStreamPerCompany(t *testing.T) {
	for _, includes := range []bool{false, true} {
		name := map[bool]string{false: "company-level apart", true: "company-level included"}[includes]
		t.Run(name, func(t *testing.T) {
			storagetest.Each(t, func(t *testing.T, dbURL string) {
				h := newHarness(t, dbURL, tapdtest.Options{Projects: 20, RecordsPerDay: 2, CompanyWideIncludesCompanyLevel: includes}, "all:2001")
				s := h.syncer()
				runs, err := s.RunAll(context.Background(), syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
				if err != nil {
					t.Fatal(err)
				}
				keys := strings.Join(keysOf(runs), ",")
				if want := map[bool]string{false: "all:2001,company:2001", true: "all:2001"}[includes]; keys != want {
					t.Fatalf("runs for %s, want %s", keys, want)
				}
				all := []string{"company:2001"}
				for _, p := range h.fake.Projects() {
					all = append(all, p.ID)
				}
				from, to := spanOf(runs...)
				h.assertMirror(h.expected(from, to, all...)) // serial is each record's own project
				// Against the floor: one page per 200 records of each calendar
				// month of the stream (plus the company-level stream when apart),
				// never one stream per project (20 × 7 months at least).
				perMonth := map[string]int{}
				perMonthCompany := map[string]int{}
				for _, r := range h.expected(from, to, all...) {
					m := r.Created.In(tapdtest.Shanghai).Format("2006-01")
					if r.CompanyLevel && !includes {
						perMonthCompany[m]++
					} else {
						perMonth[m]++
					}
				}
				floor := 0
				for _, months := range []map[string]int{perMonth, perMonthCompany} {
					for _, n := range months {
						floor += max(1, (n+199)/200)
					}
				}
				if calls := h.client.Calls(); float64(calls) > 1.1*float64(floor)+4 { // + the probes learned once
					t.Fatalf("a company of 20 projects cost %d requests through one stream; floor %d", calls, floor)
				}
				// An idle poll costs one request for the stream (two with company-level apart).
				h.fake.Advance(10 * time.Minute)
				before := h.client.Calls()
				if _, err := s.RunAll(context.Background(), syncer.RunOptions{Trigger: syncer.TriggerCLI}, ""); err != nil {
					t.Fatal(err)
				}
				if idle, want := h.client.Calls()-before, map[bool]int{false: 2, true: 1}[includes]; idle != want {
					t.Fatalf("idle poll cost %d requests, want %d", idle, want)
				}
			})
		})
	}
}

// TestCompanyProbeAtAMonthStart: on the 3rd of a month whose company-level
// log is still empty, whether the company-wide query includes company-level
// logs is learned from an older month, once: the backfill fetches them
// separately only when TAPD really keeps them apart, and idle polls never
// probe again.
func TestCompanyProbeAtAMonthStart(t *testing.T) {
	third := time.Date(2026, 12, 3, 10, 0, 30, 0, tapdtest.Shanghai)
	for _, includes := range []bool{false, true} {
		t.Run(map[bool]string{false: "company-level apart", true: "company-level included"}[includes], func(t *testing.T) {
			storagetest.Each(t, func(t *testing.T, dbURL string) {
				h := newHarness(t, dbURL, tapdtest.Options{Now: third, Projects: 3, RecordsPerDay: 2, CompanyWideIncludesCompanyLevel: includes,
					CompanyQuietSince: time.Date(2026, 12, 1, 0, 0, 0, 0, tapdtest.Shanghai)}, "all:2001")
				s := h.syncer()
				ctx := context.Background()
				runs, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
				if err != nil {
					t.Fatal(err)
				}
				if keys, want := strings.Join(keysOf(runs), ","), map[bool]string{false: "all:2001,company:2001", true: "all:2001"}[includes]; keys != want {
					t.Fatalf("backfill ran %s, want %s", keys, want)
				}
				// The first poll may retry month-end minutes committed before the
				// concurrent run learned end_time's meaning; measure the ones after it.
				for i := range 3 {
					h.fake.Advance(10 * time.Minute)
					before := h.client.Calls()
					if _, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, ""); err != nil {
						t.Fatal(err)
					}
					if idle, want := h.client.Calls()-before, map[bool]int{false: 2, true: 1}[includes]; i > 0 && idle != want {
						t.Fatalf("idle poll cost %d requests, want %d", idle, want)
					}
				}
			})
		})
	}
}

// TestCompanyProbeInconclusiveIsRememberedForADay: a company without any
// company-level record in the half year cannot tell; polls within a day
// do not ask again, the first poll after it does.
func TestCompanyProbeInconclusiveIsRememberedForADay(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 2, RecordsPerDay: 1, CompanyQuietSince: fakeNow.AddDate(-1, 0, 0)}, "all:2001")
		s := h.syncer()
		ctx := context.Background()
		poll := func() int {
			before := h.client.Calls()
			if _, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, ""); err != nil {
				t.Fatal(err)
			}
			return h.client.Calls() - before
		}
		probed := func() string {
			v, err := h.store.Meta(ctx, "tapd.company_wide_includes_company_level")
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		poll()
		first := probed()
		if !strings.HasPrefix(first, "unknown since ") {
			t.Fatalf("after a probe that found no company-level record: %q", first)
		}
		h.fake.Advance(10 * time.Minute)
		poll() // may retry month-end minutes committed before end_time's meaning was learned
		for range 3 {
			h.fake.Advance(10 * time.Minute)
			if n := poll(); n != 2 { // the company-wide stream and the company-level one, no probe
				t.Fatalf("idle poll within the day cost %d requests, want 2", n)
			}
		}
		if probed() != first {
			t.Fatalf("probed again within the day: %q, then %q", first, probed())
		}
		h.fake.Advance(25 * time.Hour)
		poll()
		if again := probed(); again == first || !strings.HasPrefix(again, "unknown since ") {
			t.Fatalf("a day later: %q (was %q)", again, first)
		}
	})
}

func TestMovingFromProjectsToAllKeepsEveryRecordOnce(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 5, RecordsPerDay: 2}, "projects:2001", "company:2001")
		h.runAll(syncer.RunOptions{})
		ctx := context.Background()
		before, _ := h.store.CountActivities(ctx, storage.Filter{})
		moved := h.syncer(func(o *syncer.Options) {
			o.Workspaces = nil
			h2 := newHarness(t, dbURL, tapdtest.Options{}, "all:2001")
			o.Workspaces = h2.opts.Workspaces
		})
		runs, err := moved.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			if r.Inserted != 0 || r.Updated != 0 {
				t.Fatalf("moving to all:2001 changed records: %+v", r)
			}
		}
		if after, _ := h.store.CountActivities(ctx, storage.Filter{}); after != before {
			t.Fatalf("%d records before the move, %d after", before, after)
		}
		counts, _ := h.store.ReportedCounts(ctx)
		if counts["all:2001"] == 0 || counts["all:2001"] > before {
			t.Fatalf("the company stream reported %d of %d records", counts["all:2001"], before)
		}
	})
}

// TestBackfillYieldsToIncrementalRuns: a 50 000-record backfill of one
// target under a request quota, with a single pool slot, while four other
// targets keep receiving records: the backfill lets their runs in between
// its windows, so each is fresh within the interval (round) its records
// arrived in, never after the whole backfill.
func TestBackfillYieldsToIncrementalRuns(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 5, Months: 7, RecordsPerDay: 1}, "projects:2001")
		big := h.fake.Projects()[0].ID
		for d := range 180 {
			h.fake.AddRecords(big, fakeNow.AddDate(0, 0, -d-1), 278) // ~50 000 records: many windows
		}
		user, pw := h.fake.Credentials()
		quota, err := tapd.New(tapd.Options{BaseURL: h.fake.URL, APIUser: user, APIPassword: pw, RequestsPerMinute: 6000,
			RetryWaitMin: time.Millisecond, RetryWaitMax: 4 * time.Millisecond, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		h.client.TAPD = quota // every run shares one limiter, as in production
		s := h.syncer(func(o *syncer.Options) { o.MaxConcurrent = 1 })
		targets, err := s.Targets(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// The small targets were synced before; they only need incremental runs.
		for _, tg := range targets[1:] {
			if _, err := s.RunTarget(context.Background(), tg, syncer.RunOptions{Trigger: syncer.TriggerCLI}); err != nil {
				t.Fatal(err)
			}
		}
		h.fake.SetLatency(2 * time.Millisecond)
		var bigDone time.Time
		var mu sync.Mutex
		bigStarted := make(chan struct{})
		h.client.onCall = func(int) {
			select {
			case <-bigStarted:
			default:
				close(bigStarted)
			}
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			run, err := s.RunTarget(context.Background(), targets[0], syncer.RunOptions{Trigger: syncer.TriggerSchedule})
			if err != nil || run.Windows < 10 {
				t.Errorf("big backfill: %+v, %v", run, err)
			}
			mu.Lock()
			bigDone = time.Now()
			mu.Unlock()
		}()
		<-bigStarted
		for round := range 2 {
			for _, tg := range targets[1:] {
				h.fake.AddRecords(tg.WorkspaceID, h.fake.Now().Add(-2*time.Minute), 1)
			}
			h.fake.Advance(time.Minute)
			var small sync.WaitGroup
			for _, tg := range targets[1:] {
				small.Add(1)
				go func() {
					defer small.Done()
					run, err := s.RunTarget(context.Background(), tg, syncer.RunOptions{Trigger: syncer.TriggerSchedule})
					if err != nil || run.Inserted != 1 {
						t.Errorf("round %d, %s: %+v, %v", round, tg.Key, run, err)
					}
				}()
			}
			small.Wait()
			mu.Lock()
			done := !bigDone.IsZero()
			mu.Unlock()
			if done {
				t.Fatalf("round %d: the small targets waited for the whole backfill", round)
			}
		}
		wg.Wait()
	})
}
