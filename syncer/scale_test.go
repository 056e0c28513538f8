package syncer_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// assertNoOverlappingRuns checks, from the run records alone, that no two
// runs of one target were ever running at the same time.
func assertNoOverlappingRuns(t *testing.T, store *storage.Store) int {
	t.Helper()
	runs, err := store.ListRuns(context.Background(), "", "", 100000, 0)
	if err != nil {
		t.Fatal(err)
	}
	byTarget := map[string][]storage.SyncRun{}
	for _, r := range runs {
		if r.Outcome == storage.OutcomeRunning || r.FinishedAt.IsZero() {
			t.Fatalf("run %d of %s never finished: %+v", r.ID, r.Workspace, r)
		}
		byTarget[r.Workspace] = append(byTarget[r.Workspace], r)
	}
	for target, rs := range byTarget {
		// A run is recorded only once its lease is taken, so ids follow the
		// order runs held the target (SQLite keeps whole seconds only).
		sort.Slice(rs, func(i, j int) bool { return rs[i].ID < rs[j].ID })
		for i := 1; i < len(rs); i++ {
			if rs[i].StartedAt.Before(rs[i-1].FinishedAt) {
				t.Fatalf("runs %d and %d of %s overlap: %v–%v and %v–%v", rs[i-1].ID, rs[i].ID, target,
					rs[i-1].StartedAt, rs[i-1].FinishedAt, rs[i].StartedAt, rs[i].FinishedAt)
			}
		}
	}
	return len(runs)
}

func TestHundredWorkspacesTwoProcessesAndAResponsiveAPI(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 100, Months: 1, RecordsPerDay: 1, CompanyRecordsPerDay: 1},
			"projects:2001", "company:2001")
		h.fake.SetLatency(time.Millisecond)
		other := storagetest.Open(t, dbURL) // a second process's pool on the same database
		ctx := context.Background()

		// Readers keep asking while 2 × 101 runs compete for 101 targets.
		stop := make(chan struct{})
		var answered atomic.Int64
		var readers sync.WaitGroup
		for range 2 {
			readers.Add(1)
			go func() {
				defer readers.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					_, lerr := h.store.ListActivities(rctx, storage.Filter{}, 100, 0)
					_, cerr := h.store.CountActivities(rctx, storage.Filter{Source: storage.SourceTAPD})
					cancel()
					if lerr != nil || cerr != nil {
						t.Errorf("the API's reads waited on the syncs: list %v, count %v", lerr, cerr)
						return
					}
					answered.Add(1)
					time.Sleep(5 * time.Millisecond)
				}
			}()
		}
		var wg sync.WaitGroup
		var runs [2][]storage.SyncRun
		for i, st := range []*storage.Store{h.store, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				runs[i], err = h.syncer(func(o *syncer.Options) { o.Store = st; o.MaxConcurrent = 4 }).
					RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		close(stop)
		readers.Wait()
		if answered.Load() < 5 {
			t.Fatalf("only %d reads answered while the targets synced", answered.Load())
		}
		all := append(runs[0], runs[1]...)
		if len(all) < 101 {
			t.Fatalf("%d runs for 101 targets", len(all))
		}
		if h.client.overlaps != 0 {
			t.Fatalf("%d times two runs paged one target at once", h.client.overlaps)
		}
		assertNoOverlappingRuns(t, h.store)
		keys := []string{"company:2001"}
		for _, p := range h.fake.Projects() {
			keys = append(keys, p.ID)
		}
		from, to := spanOf(all...)
		h.assertMirror(h.expected(from, to, keys...))
		s := h.syncer()
		if _, err := s.Targets(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := s.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, s := range st {
			total += s.RecordsStored
		}
		if stored, _ := h.store.CountActivities(ctx, storage.Filter{Source: storage.SourceTAPD}); total != stored {
			t.Fatalf("per-target counts add up to %d, %d records stored", total, stored)
		}
	})
}

func TestRunPoolBoundsConcurrency(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 12, Months: 1, RecordsPerDay: 1}, "projects:2001")
		h.fake.SetLatency(2 * time.Millisecond)
		var mu sync.Mutex
		inFlight, peak := 0, 0
		h.client.onCall = func(int) {
			mu.Lock()
			inFlight = 0
			for _, n := range h.client.snapshotInFlight() {
				if n > 0 {
					inFlight++
				}
			}
			peak = max(peak, inFlight)
			mu.Unlock()
		}
		h.syncer(func(o *syncer.Options) { o.MaxConcurrent = 3 }).RunAll(context.Background(), syncer.RunOptions{Trigger: syncer.TriggerCLI}, "") //nolint:errcheck // checked below
		if peak > 3 || peak < 2 {
			t.Fatalf("%d targets paged at once with max_concurrent 3", peak)
		}
	})
}

func TestLeaseLostMidRunStopsAtTheNextCommit(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1}, "10074561")
		h.opts.PageSize = 50
		ctx := context.Background()
		var stolenAt atomic.Value
		h.client.onCall = func(n int) {
			if n != 12 {
				return
			}
			// Another replica takes the lease (ours "expired").
			if _, err := h.store.DB().ExecContext(ctx, h.store.DB().Rebind(`UPDATE sync_lease SET holder = 'other:1:x', process = 'other:1'
				WHERE target = '10074561'`)); err != nil {
				t.Error(err)
			}
			state, _ := h.store.SyncState(ctx, "10074561")
			stolenAt.Store(state.HighWater)
		}
		runs, err := h.syncer().RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
		if !errors.Is(err, storage.ErrLeaseLost) || len(runs) != 1 || runs[0].Outcome != storage.OutcomeLostLease {
			t.Fatalf("run after losing its lease: %+v, %v", runs, err)
		}
		// A window was in flight; its commit was refused: nothing moved after the steal.
		time.Sleep(10 * time.Millisecond)
		state, _ := h.store.SyncState(ctx, "10074561")
		if want := stolenAt.Load().(time.Time); !state.HighWater.Equal(want) {
			t.Fatalf("checkpoint moved from %v to %v after the lease was lost", want, state.HighWater)
		}
		if got, _ := h.store.GetRun(ctx, runs[0].ID); got.Outcome != storage.OutcomeLostLease {
			t.Fatalf("recorded outcome %q", got.Outcome)
		}
	})
}

func TestExpiredLeaseIsTakenOverAndItsRunAbandoned(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, st *storage.Store) {
		ctx := context.Background()
		dead := &storage.SyncRun{Workspace: "7", Trigger: "schedule", Outcome: storage.OutcomeRunning, StartedAt: time.Now()}
		if err := st.CreateRun(ctx, dead); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := st.TakeLease(ctx, "7", "deadhost:1:a", "deadhost:1", storage.Holder{}, 2*time.Second); err != nil || !ok {
			t.Fatalf("first take: %v %v", ok, err)
		}
		if cur, ok, _ := st.TakeLease(ctx, "7", "live:2:b", "live:2", storage.Holder{}, time.Minute); ok || cur.Process != "deadhost:1" {
			t.Fatalf("an unexpired lease was taken over: %+v", cur)
		}
		time.Sleep(2100 * time.Millisecond) // SQLite keeps whole seconds
		if _, ok, err := st.TakeLease(ctx, "7", "live:2:b", "live:2", storage.Holder{}, time.Minute); err != nil || !ok {
			t.Fatalf("expired lease not taken over: %v %v", ok, err)
		}
		if err := st.RenewLease(ctx, "7", "deadhost:1:a", time.Minute); !errors.Is(err, storage.ErrLeaseLost) {
			t.Fatalf("the old holder renewed a lease it lost: %v", err)
		}
		err := st.CommitWindow(ctx, storage.WindowCommit{Workspace: "7", Window: storage.Interval{Start: time.Unix(60, 0), End: time.Unix(120, 0)},
			Holder: "deadhost:1:a", LeaseTTL: time.Minute})
		if !errors.Is(err, storage.ErrLeaseLost) {
			t.Fatalf("a commit fenced on a lost lease went through: %v", err)
		}
		if state, _ := st.SyncState(ctx, "7"); state.Synced() {
			t.Fatal("the refused commit moved the checkpoint")
		}
		if n, _ := st.AbandonRuns(ctx, "7"); n != 1 {
			t.Fatalf("abandoned %d runs", n)
		}
	})
}

func TestLateRecordsAreMirroredBySettleChecks(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1, Months: 1}, "10074561")
		h.runAll(syncer.RunOptions{})
		now := h.fake.Now()
		late := append(h.fake.AddRecords("10074561", now.Add(-3*time.Hour), 2),
			h.fake.AddRecords("10074561", now.Add(-10*time.Minute), 1)...)
		ctx := context.Background()
		stored := func() int {
			n := 0
			for _, r := range late {
				if got, _ := h.store.ListActivities(ctx, storage.Filter{Source: storage.SourceTAPD, Username: r.Creator,
					Since: r.Created, Until: r.Created.Add(time.Second)}, 100, 0); len(got) > 0 {
					n++
				}
			}
			return n
		}
		h.fake.Advance(10 * time.Minute)
		h.runAll(syncer.RunOptions{})
		if n := stored(); n != 0 {
			t.Fatalf("%d late records were fetched without a settle check; the test proves nothing", n)
		}
		h.fake.Advance(time.Hour) // sync.settle_check passes
		before := h.client.Calls()
		runs := h.runAll(syncer.RunOptions{})
		if n := stored(); n != len(late) || runs[0].Outcome != storage.OutcomeSuccess || runs[0].Inserted != len(late) {
			t.Fatalf("after the settle check %d of %d late records are mirrored; run %+v", n, len(late), runs[0])
		}
		if calls := h.client.Calls() - before; calls > 6 {
			t.Fatalf("settle check and re-fetch cost %d requests", calls)
		}
		st, _ := h.syncer().Status(ctx)
		if st[0].Settle == nil || st[0].Settle.RemoteTotal <= st[0].Settle.Reported {
			t.Fatalf("status does not show the settle check that found the late records: %+v", st[0].Settle)
		}
		// Next hour: nothing new, the settle check costs one request and finds nothing.
		h.fake.Advance(time.Hour)
		before = h.client.Calls()
		runs = h.runAll(syncer.RunOptions{})
		if calls := h.client.Calls() - before; calls != 2 || runs[0].Inserted != 0 {
			t.Fatalf("idle run with a settle check: %d requests, %+v", calls, runs[0])
		}
	})
}

func TestServerInADaylightSavingZoneBackfillsWithout422(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no tzdata for America/New_York")
	}
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1}, "10074561")
		h.opts.Now = func() time.Time { return h.fake.Now().In(ny) } // the server's clock reads New York time
		runs := h.runAll(syncer.RunOptions{Full: true})
		if runs[0].Outcome != storage.OutcomeSuccess {
			t.Fatalf("full backfill from a New York server: %+v", runs[0])
		}
		h.assertEveryRequestOK()
		from, to := spanOf(runs...)
		h.assertMirror(h.expected(from, to, "10074561"))
	})
}

func TestManualTriggerNamesEveryForm(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 2, Months: 1}, "projects:2001", "company:2001")
		h.fake.SetLatency(20 * time.Millisecond)
		ctx := context.Background()
		s := h.syncer(func(o *syncer.Options) { o.MaxConcurrent = 1 })
		for name, want := range map[string]string{
			"projects:2001": "10074561,10074562", "company:2001": "company:2001", "10074562": "10074562",
		} {
			got, err := s.Trigger(ctx, name, false)
			if err != nil || strings.Join(got.Queued, ",") != want {
				t.Fatalf("trigger %q queued %v (%v), want %s", name, got.Queued, err, want)
			}
			s.Wait()
		}
		// While a run is queued or running, a second trigger says so instead of dropping it silently.
		first, _ := s.Trigger(ctx, "", true) // full resyncs, one at a time: they outlast the second trigger
		second, err := s.Trigger(ctx, "", false)
		if err != nil || len(first.Queued) != 3 || len(second.Queued) != 0 || len(second.AlreadyRunning) != 3 {
			t.Fatalf("first %+v, second %+v, %v", first, second, err)
		}
		s.Wait()
		// Another process holds one: named, with where it runs.
		if _, ok, err := h.store.TakeLease(ctx, "10074561", "elsewhere:9:z", "elsewhere:9", storage.Holder{}, time.Minute); !ok || err != nil {
			t.Fatal(ok, err)
		}
		got, _ := s.Trigger(ctx, "10074561", false)
		if len(got.AlreadyRunning) != 1 || got.AlreadyRunning[0].Where != "elsewhere:9" {
			t.Fatalf("trigger of a target held elsewhere: %+v", got)
		}
		for _, name := range []string{"999", "2001"} { // a company id alone is no configured form
			if _, err := s.Trigger(ctx, name, false); !errors.Is(err, syncer.ErrUnknownWorkspace) {
				t.Fatalf("trigger %q: %v", name, err)
			}
		}
		assertNoOverlappingRuns(t, h.store)
	})
}

// snapshotInFlight copies how many calls are in flight per query scope.
func (c *countingTAPD) snapshotInFlight() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.inFlight))
	for k, v := range c.inFlight {
		out[k] = v
	}
	return out
}

func TestRunFailingBecauseTheDatabaseWentAwayIsRecordedAsFailed(t *testing.T) {
	dbURL := storagetest.URL(t, "postgres") // SQLite cannot go away under a running process
	name := dbURL[strings.LastIndex(dbURL, "/")+1:]
	if i := strings.Index(name, "?"); i >= 0 {
		name = name[:i]
	}
	admin, err := sql.Open("postgres", storagetest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	setAllowed := func(ok bool) {
		if _, err := admin.Exec(fmt.Sprintf(`ALTER DATABASE %s ALLOW_CONNECTIONS %t`, name, ok)); err != nil {
			t.Error(err)
		}
		if !ok {
			admin.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name) //nolint:errcheck // best effort
		}
	}
	h := newHarness(t, dbURL, tapdtest.Options{Projects: 1}, "10074561")
	h.opts.PageSize = 50
	h.client.onCall = func(n int) {
		if n == 8 {
			setAllowed(false)
		}
	}
	s := h.syncer()
	runs, err := s.RunAll(context.Background(), syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
	if err == nil || len(runs) != 1 || runs[0].Outcome != storage.OutcomeFailed {
		t.Fatalf("run with the database gone: %+v, %v", runs, err)
	}
	h.client.onCall = nil
	time.Sleep(1500 * time.Millisecond) // a retry or two fail meanwhile
	setAllowed(true)
	s.Wait() // the outcome writer ends once it has recorded the run
	got, err := h.store.GetRun(context.Background(), runs[0].ID)
	if err != nil || got.Outcome != storage.OutcomeFailed || got.Error == "" {
		t.Fatalf("recorded run = %+v, %v; want failed with its error", got, err)
	}
	// The next run of the target (this process retakes its own lease, which it
	// could not release while the database was away) does not take it for a
	// run whose process died.
	next, err := s.RunAll(context.Background(), syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
	if err != nil || len(next) != 1 || next[0].Outcome != storage.OutcomeSuccess {
		t.Fatalf("next run: %+v, %v", next, err)
	}
	if got, _ := h.store.GetRun(context.Background(), runs[0].ID); got.Outcome != storage.OutcomeFailed {
		t.Fatalf("failed run rewritten as %q", got.Outcome)
	}
}

func TestHorizonLaterThanOursBecomesAGapNotAFailure(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1}, "10074561")
		h.opts.HorizonDays = 183 // we think TAPD serves a day more than it does
		runs := h.runAll(syncer.RunOptions{})
		if runs[0].Outcome != storage.OutcomePartial || !strings.Contains(strings.Join(runs[0].Warnings, "\n"), "beyond its half year") {
			t.Fatalf("run = %+v", runs[0])
		}
		if runs[0].Requests > 60 {
			t.Fatalf("finding TAPD's horizon cost %d requests", runs[0].Requests)
		}
		// Everything TAPD still serves is mirrored...
		_, to := spanOf(runs...)
		h.assertMirror(h.expected(h.fake.Horizon().Truncate(time.Minute), to, "10074561"))
		// ...and the day TAPD refused is a gap with its reason, ending at TAPD's horizon.
		st, _ := h.syncer().Status(context.Background())
		gaps := st[0].Gaps
		if len(gaps) != 1 || gaps[0].Reason != storage.ReasonBeyondHorizon || gaps[0].End.Sub(h.fake.Horizon()) > time.Minute || gaps[0].End.Before(h.fake.Horizon().Truncate(time.Minute)) {
			t.Fatalf("gaps %+v; TAPD's horizon %v", gaps, h.fake.Horizon())
		}
	})
}

// startFailures records StartFailed calls.
type startFailures struct {
	mu    sync.Mutex
	calls []string
}

func (m *startFailures) RunFinished(storage.SyncRun)               {}
func (m *startFailures) Records(string, int, storage.UpsertResult) {}
func (m *startFailures) StartFailed(workspace, stage string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, workspace+"/"+stage)
}

func TestATurnThatCannotStartLeavesAMetric(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1, Months: 1}, "10074561")
		gone := storagetest.Open(t, dbURL)
		gone.Close() // the database is unreachable for this syncer
		m := &startFailures{}
		s := h.syncer(func(o *syncer.Options) { o.Store = gone; o.Metrics = m; o.Interval = time.Hour })
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			m.mu.Lock()
			n := len(m.calls)
			m.mu.Unlock()
			if n >= 1 || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		s.Stop() //nolint:errcheck // the schedule is all that runs
		m.mu.Lock()
		defer m.mu.Unlock()
		if !slices.Contains(m.calls, "10074561/claim") {
			t.Fatalf("start failures counted: %v", m.calls)
		}
	})
}

// TestHeartbeatKeepsALongWindowsLease: a window that pages for longer than
// the lease lasts keeps its lease (renewed every third of it), so another
// process cannot take the target over from a live run.
func TestHeartbeatKeepsALongWindowsLease(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1, Months: 1, RecordsPerDay: 40}, "10074561")
		h.opts.PageSize, h.opts.LeaseTTL = 20, 2*time.Second
		ctx := context.Background()
		s := h.syncer()
		targets, _ := s.Targets(ctx)
		h.fake.SetLatency(120 * time.Millisecond) // November: ~50 pages, ~6 s with no commit: far longer than the lease
		done := make(chan error, 1)
		go func() {
			_, err := s.RunTarget(ctx, targets[0], syncer.RunOptions{Trigger: syncer.TriggerCLI})
			done <- err
		}()
		time.Sleep(5 * time.Second) // well past the last commit's TTL, before the run ends
		other := h.syncer(func(o *syncer.Options) { o.Store = storagetest.Open(t, dbURL) })
		if _, err := other.RunTarget(ctx, targets[0], syncer.RunOptions{Trigger: syncer.TriggerCLI}); !errors.Is(err, syncer.ErrBusy) {
			t.Fatalf("another process took a live run's target: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("the long run: %v", err)
		}
		assertNoOverlappingRuns(t, h.store)
	})
}
