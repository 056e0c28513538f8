package syncer_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

func TestBackfillCompanyAndProjects(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{}, "projects:2001", "company:2001")
		runs := h.runAll(syncer.RunOptions{})
		if got := strings.Join(keysOf(runs), ","); got != "10074561,10074562,10074563,company:2001" {
			t.Fatalf("runs for %s", got)
		}
		for _, r := range runs {
			if r.Outcome != storage.OutcomeSuccess || len(r.Warnings) != 0 || r.Inserted == 0 || r.Inserted != r.RemoteTotal {
				t.Fatalf("run %+v", r)
			}
		}
		from, to := spanOf(runs...)
		// From the horizon's own minute: nothing TAPD still serves is left out.
		if want := h.fake.Horizon().Truncate(time.Minute); !from.Equal(want) {
			t.Fatalf("backfill starts at %v, want the horizon's minute %v", from, want)
		}
		h.assertMirror(h.expected(from, to, "10074561", "10074562", "10074563", "company:2001"))
		// The first window's oldest record predates the mirror: 8 months were generated.
		if n, _ := h.store.CountActivities(context.Background(), storage.Filter{}); n >= int64(len(h.fake.Truth())) {
			t.Fatalf("mirror holds %d of %d: it fetched beyond TAPD's half year", n, len(h.fake.Truth()))
		}
	})
}

func TestFaultsAndRateLimitStorms(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 2, RecordsPerDay: 10}, "projects:2001")
		h.fake.SetFaults(0.2)
		h.fake.RateLimitStorm(6, false)
		h.opts.PageSize = 50 // more pages, more faults
		runs := h.runAll(syncer.RunOptions{})
		faulted := 0
		for _, r := range h.fake.Requests() {
			if r.Fault != "" {
				faulted++
			}
		}
		if faulted < 20 {
			t.Fatalf("only %d faults injected; the test is too gentle", faulted)
		}
		from, to := spanOf(runs...)
		h.assertMirror(h.expected(from, to, "10074561", "10074562"))
	})
}

func TestRecordsArrivingWhilePaging(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 2}, "10074561", "10074562")
		h.opts.PageSize = 20
		// Late records land in the newest windows while they are paged.
		h.fake.SetArrivals(2, 24*time.Hour)
		first := h.runAll(syncer.RunOptions{})
		refetched := false
		for _, r := range first {
			refetched = refetched || r.Pages > r.Windows+r.RemoteTotal/20+1
		}
		if !refetched {
			t.Fatalf("no window was re-fetched although records kept arriving: %+v", first)
		}
		h.fake.SetArrivals(0, 0)
		h.fake.Advance(time.Minute)
		second := h.runAll(syncer.RunOptions{Full: true})
		for _, r := range second {
			if r.Outcome != storage.OutcomeSuccess {
				t.Fatalf("quiet resync did not verify: %+v", r)
			}
		}
		from, _ := spanOf(first...)
		_, to := spanOf(second...)
		h.assertMirror(h.expected(from, to, "10074561", "10074562"))
	})
}

func TestBurstsAndDeepWindows(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1, PagingCap: 1000}, "10074561")
		// 450 records in one minute: three pages of one minute.
		h.fake.AddRecords("10074561", fakeNow.Add(-48*time.Hour).Truncate(time.Minute).Add(17*time.Second), 450)
		// 2600 records in one day: deeper than the paging cap, so split in time.
		for i := range 26 {
			h.fake.AddRecords("10074561", fakeNow.Add(-20*24*time.Hour).Add(time.Duration(i)*17*time.Minute), 100)
		}
		h.opts.PagingCap, h.opts.SplitAbove = 1000, 1000
		runs := h.runAll(syncer.RunOptions{})
		if runs[0].Outcome != storage.OutcomeSuccess {
			t.Fatalf("run = %+v", runs[0])
		}
		h.assertEveryRequestOK()
		from, to := spanOf(runs...)
		h.assertMirror(h.expected(from, to, "10074561"))

		// One minute deeper than the cap cannot be split: a warning, with both numbers.
		h.fake.AddRecords("10074561", fakeNow.Add(-3*time.Hour).Truncate(time.Minute), 1100)
		h.fake.Advance(time.Minute)
		runs = h.runAll(syncer.RunOptions{Since: fakeNow.Add(-4 * time.Hour)})
		if runs[0].Outcome != storage.OutcomePartial || len(runs[0].Warnings) == 0 ||
			!strings.Contains(strings.Join(runs[0].Warnings, "\n"), "TAPD reports 1100 records, 1000 distinct fetched") {
			t.Fatalf("over-cap minute: outcome %s warnings %q", runs[0].Outcome, runs[0].Warnings)
		}
	})
}

func TestCrashMidBackfillResumes(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1}, "10074561")
		h.opts.PageSize = 50
		ctx, crash := context.WithCancel(context.Background())
		h.client.onCall = func(n int) {
			if n == 10 {
				crash()
			}
		}
		s := h.syncer()
		_, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("crashed run err = %v", err)
		}
		h.client.onCall = nil
		// A run whose process was killed outright stays "running"; the next run marks it.
		killed := &storage.SyncRun{Workspace: "10074561", Trigger: "schedule", Outcome: storage.OutcomeRunning, StartedAt: time.Now()}
		if err := h.store.CreateRun(context.Background(), killed); err != nil {
			t.Fatal(err)
		}
		state, _ := h.store.SyncState(context.Background(), "10074561")
		if !state.Synced() {
			t.Fatal("no window committed before the crash")
		}
		runs, _ := h.store.ListRuns(context.Background(), "10074561", storage.OutcomeCanceled, 10, 0)
		if len(runs) != 1 {
			t.Fatalf("crashed run not recorded as canceled: %+v", runs)
		}
		h.fake.ResetRequests()
		resumed := h.runAll(syncer.RunOptions{})
		resumeFrom := state.HighWater.Add(-h.opts.Overlap)
		for _, r := range h.fake.Requests() {
			start, err := time.ParseInLocation("2006-01-02 15:04", r.Query.Get("start_time"), tapdtest.Shanghai)
			if err != nil || start.Before(resumeFrom) {
				t.Fatalf("resumed run re-fetched committed time: start_time %q before %v", r.Query.Get("start_time"), resumeFrom)
			}
		}
		_, to := spanOf(resumed...)
		h.assertMirror(h.expected(runs[0].WindowStart, to, "10074561"))
		if k, _ := h.store.GetRun(context.Background(), killed.ID); k.Outcome != storage.OutcomeAbandoned || k.FinishedAt.IsZero() {
			t.Fatalf("killed run = %+v, want abandoned", k)
		}
		if st, _ := h.store.SyncState(context.Background(), "10074561"); len(st.Gaps()) != 0 {
			t.Fatalf("gaps after resume: %v", st.Gaps())
		}
	})
}

func TestTimeTravelKeepsHistoryAndReportsGaps(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1}, "10074561")
		first := h.runAll(syncer.RunOptions{})
		stored, _ := h.store.CountActivities(context.Background(), storage.Filter{})

		// A month later the oldest month has left TAPD; the mirror keeps it.
		h.fake.Advance(30 * 24 * time.Hour)
		h.fake.AddRecords("10074561", h.fake.Now().Add(-time.Hour), 7)
		second := h.runAll(syncer.RunOptions{})
		if second[0].Inserted != 7 || second[0].Outcome != storage.OutcomeSuccess {
			t.Fatalf("second run = %+v", second[0])
		}
		after, _ := h.store.CountActivities(context.Background(), storage.Filter{Until: h.fake.Horizon()})
		if after == 0 {
			t.Fatal("records older than TAPD's horizon were not kept")
		}
		// Status counts them, with the oldest one's time.
		oldest, _ := h.store.ListActivities(context.Background(), storage.Filter{}, 1, int(stored+6))
		if st, err := h.syncer().Status(context.Background()); err != nil || st[0].BeyondHorizon.Records != after ||
			st[0].BeyondHorizon.Oldest == nil || !st[0].BeyondHorizon.Oldest.Equal(oldest[0].Timestamp) {
			t.Fatalf("status beyond the horizon = %+v (%v), want %d records from %v", st[0].BeyondHorizon, err, after, oldest[0].Timestamp)
		}
		if n, _ := h.store.CountActivities(context.Background(), storage.Filter{}); n != stored+7 {
			t.Fatalf("stored %d, want %d", n, stored+7)
		}
		h.assertMirror(append(h.expected(first[0].WindowStart, first[0].WindowEnd, "10074561"),
			h.expected(first[0].WindowEnd, second[0].WindowEnd, "10074561")...))

		// Down for 200 days: the time between the checkpoint and the new horizon is lost, and said so.
		h.fake.Advance(200 * 24 * time.Hour)
		third := h.runAll(syncer.RunOptions{})
		if third[0].Outcome != storage.OutcomePartial {
			t.Fatalf("run after a long outage = %+v", third[0])
		}
		st, err := h.syncer().Status(context.Background())
		if err != nil || len(st) != 1 {
			t.Fatalf("status = %+v, %v", st, err)
		}
		want := storage.Interval{Start: second[0].WindowEnd, End: third[0].WindowStart}
		if len(st[0].Gaps) != 1 || !st[0].Gaps[0].Start.Equal(want.Start) || !st[0].Gaps[0].End.Equal(want.End) {
			t.Fatalf("gaps = %+v, want [%v, %v)", st[0].Gaps, want.Start, want.End)
		}
		if !strings.Contains(strings.Join(third[0].Warnings, "\n"), "gap in coverage") {
			t.Fatalf("gap not warned on the run: %q", third[0].Warnings)
		}
		if st[0].Gaps[0].Acknowledged {
			t.Fatal("gap acknowledged before anyone did")
		}

		// An operator acknowledges the loss: still reported, no longer warned about.
		acked, err := h.syncer().AcknowledgeGaps(context.Background(), "10074561", "worker was down")
		if err != nil || len(acked) != 1 {
			t.Fatalf("ack = %v, %v", acked, err)
		}
		h.fake.Advance(time.Minute)
		fourth := h.runAll(syncer.RunOptions{})
		if fourth[0].Outcome != storage.OutcomeSuccess || len(fourth[0].Warnings) != 0 {
			t.Fatalf("run after acknowledgement = %+v", fourth[0])
		}
		st, _ = h.syncer().Status(context.Background())
		if len(st[0].Gaps) != 1 || !st[0].Gaps[0].Acknowledged {
			t.Fatalf("gaps after acknowledgement = %+v", st[0].Gaps)
		}
	})
}

func TestResyncChangesNothingAndTombstonesHold(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1}, "10074561")
		h.runAll(syncer.RunOptions{})
		ctx := context.Background()
		victim, _ := h.store.ListActivities(ctx, storage.Filter{}, 1, 10)
		if _, err := h.store.DeleteActivity(ctx, victim[0].ID); err != nil {
			t.Fatal(err)
		}
		before, _ := h.store.CountActivities(ctx, storage.Filter{})
		s := h.syncer()
		started, err := s.Trigger(ctx, "10074561", true)
		if err != nil || len(started.Queued) != 1 || started.Queued[0] != "10074561" {
			t.Fatalf("trigger = %+v, %v", started, err)
		}
		s.Wait()
		runs, _ := h.store.ListRuns(ctx, "10074561", "", 1, 0)
		run := runs[0]
		if run.Outcome != storage.OutcomeSuccess || run.Trigger != syncer.TriggerManual || run.Inserted != 0 ||
			run.Updated != 0 || run.Suppressed != 1 || run.Unchanged != run.Fetched-1 {
			t.Fatalf("manual full resync = %+v", run)
		}
		if after, _ := h.store.CountActivities(ctx, storage.Filter{}); after != before {
			t.Fatalf("resync changed the count %d -> %d", before, after)
		}
		if _, err := s.Trigger(ctx, "999", false); !errors.Is(err, syncer.ErrUnknownWorkspace) {
			t.Fatalf("unknown workspace trigger err = %v", err)
		}
	})
}

func TestSteadyStateCostsOneRequest(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{}, "10074561", "company:2001")
		h.runAll(syncer.RunOptions{})
		h.fake.Advance(10 * time.Minute)
		before := h.client.Calls()
		runs := h.runAll(syncer.RunOptions{})
		if calls := h.client.Calls() - before; calls != 2 {
			t.Fatalf("idle incremental sync made %d requests for 2 workspaces, want 2", calls)
		}
		for _, r := range runs {
			if r.Outcome != storage.OutcomeSuccess || r.Inserted != 0 {
				t.Fatalf("idle run = %+v", r)
			}
		}
	})
}

func TestTwoSyncersNeverShareAWorkspace(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 3}, "projects:2001")
		h.fake.SetLatency(2 * time.Millisecond)
		other := storagetest.Open(t, dbURL) // a second process's pool
		var wg sync.WaitGroup
		var runs [2][]storage.SyncRun
		for i, st := range []*storage.Store{h.store, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				runs[i], err = h.syncer(func(o *syncer.Options) { o.Store = st }).RunAll(context.Background(),
					syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if h.client.overlaps != 0 {
			t.Fatalf("%d times two runs paged one workspace at once", h.client.overlaps)
		}
		all := append(runs[0], runs[1]...)
		from, to := spanOf(all...)
		h.assertMirror(h.expected(from, to, "10074561", "10074562", "10074563"))
	})
}

func TestSchedulerRunsOnIntervalWithoutOverlap(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1, Months: 1}, "10074561")
		h.fake.SetLatency(30 * time.Millisecond) // runs outlast the interval now and then
		s := h.syncer(func(o *syncer.Options) { o.Interval = 50 * time.Millisecond })
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			runs, _ := h.store.ListRuns(context.Background(), "10074561", storage.OutcomeSuccess, 10, 0)
			if len(runs) >= 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d scheduled runs finished", len(runs))
			}
			time.Sleep(20 * time.Millisecond)
		}
		st, _ := s.Status(context.Background())
		if len(st) != 1 || st[0].NextRun == nil || st[0].LastSuccess == nil || st[0].LastSuccess.Trigger != syncer.TriggerSchedule {
			t.Fatalf("status = %+v", st)
		}
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		if h.client.overlaps != 0 {
			t.Fatalf("scheduled runs overlapped %d times", h.client.overlaps)
		}
	})
}
