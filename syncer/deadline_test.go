package syncer_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// TestFirstBackfillWinsTheRaceAgainstTheHorizon backfills 100 projects at
// TAPD's default quota (the fake's clock moves a second per request, so
// the horizon moves as the backfill spends its quota) with dense records
// from 5 to 35 minutes after the horizon in every project: 0 of them lost.
// Each project's first month also holds a few hundred more records, so its
// oldest month takes several pages. Pooled first come, first served, with
// each run planning from the horizon when it got a slot, the last projects
// started after 5 minutes and silently lost their oldest records; earliest
// expiry first, every project's first day is fetched in the first ~200
// requests (page 1 of its first month, then its first day).
func TestFirstBackfillWinsTheRaceAgainstTheHorizon(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		now := time.Date(2026, 12, 1, 12, 0, 30, 0, tapdtest.Shanghai)
		h := newHarness(t, dbURL, tapdtest.Options{Now: now, Projects: 100, Months: 2, HorizonDays: 30,
			RecordsPerDay: 1, CompanyRecordsPerDay: 1, TimePerRequest: time.Second}, "projects:2001")
		h.opts.HorizonDays = 30
		start := h.fake.Horizon()
		near := h.fake.PlaceNearHorizon(5*time.Minute, 30*time.Minute, 100)
		h.fake.PlaceNearHorizon(24*time.Hour, 20*24*time.Hour, 600) // a first month of several pages
		ctx := context.Background()
		// One slot: the fake's clock moves only with requests, so a run
		// waiting on the database while holding one of several slots would
		// let the others spend minutes of TAPD time in no time at all
		// (with a real quota they could not); the order is what is tested.
		s := h.syncer(func(o *syncer.Options) { o.MaxConcurrent = 1 })
		if _, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, ""); err != nil {
			t.Fatal(err)
		}
		got, err := h.store.ListActivities(ctx, storage.Filter{Source: storage.SourceTAPD, Since: start,
			Until: start.Add(time.Hour)}, 1_000_000, 0)
		if err != nil {
			t.Fatal(err)
		}
		stored := map[string]bool{}
		for _, a := range got {
			stored[a.SourceID] = true
		}
		lost := map[string]int{}
		for _, r := range near {
			if !stored[r.ID] {
				lost[r.Workspace]++
			}
		}
		if len(lost) > 0 {
			for ws := range lost {
				runs, _ := h.store.ListRuns(ctx, ws, "", 10, 0)
				for _, r := range runs {
					t.Logf("%s run %d %s requests %d: %q", ws, r.ID, r.Outcome, r.Requests, r.Warnings)
				}
			}
			t.Fatalf("%d of %d projects lost near-horizon records to the horizon: %v", len(lost), 100, lost)
		}
		if took := h.fake.Now().Sub(now); took < 6*time.Minute {
			t.Fatalf("the backfill took %s of TAPD time: too short to race the horizon", took)
		}
		// What expired before it was reached is a gap that says so.
		st, err := s.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range st {
			for _, g := range w.Gaps {
				if g.Reason != storage.ReasonExpired || g.End.After(start.Add(5*time.Minute)) {
					t.Fatalf("%s: gap %+v", w.Workspace, g)
				}
			}
			if w.AtRisk != nil && w.AtRisk.ExpiresInSeconds < int64(29*24*3600) {
				t.Fatalf("%s after its backfill: %+v at risk", w.Workspace, w.AtRisk)
			}
		}
	})
}

// TestExpiredBeforeFetchedIsAGapAndAtRiskIsShown: a target whose plan
// starts at the horizon but whose turn comes after that time left TAPD's
// half year gets a gap saying it expired, and status shows, before the
// run, the oldest unfetched minute and its time to expiry.
func TestExpiredBeforeFetchedIsAGapAndAtRiskIsShown(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1, Months: 1, HorizonDays: 10, TimePerRequest: 3 * time.Minute}, "10074561")
		h.opts.HorizonDays = 10
		ctx := context.Background()
		s := h.syncer()
		st, err := s.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) != 1 || st[0].AtRisk == nil || st[0].AtRisk.ExpiresInSeconds > 60 ||
			!st[0].AtRisk.OldestUnfetched.Equal(h.fake.Horizon().Truncate(time.Minute)) {
			t.Fatalf("before the first run, status = %+v, want the horizon's minute at risk now", st[0].AtRisk)
		}
		runs, err := s.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
		if err != nil {
			t.Fatal(err)
		}
		// The first request (the end_time probe) moved TAPD's clock 3
		// minutes past the plan: the plan's first minutes expired.
		if len(runs) != 1 || runs[0].Outcome != storage.OutcomePartial ||
			!strings.Contains(strings.Join(runs[0].Warnings, "\n"), "expired at TAPD before it was fetched") {
			t.Fatalf("runs = %+v", runs)
		}
		st, _ = s.Status(ctx)
		if len(st[0].Gaps) != 1 || st[0].Gaps[0].Reason != storage.ReasonExpired {
			t.Fatalf("gaps = %+v, want the expired span", st[0].Gaps)
		}
		// A later run does not warn about it again: nothing can fetch it.
		if runs := h.runAll(syncer.RunOptions{}); runs[0].Outcome != storage.OutcomeSuccess {
			t.Fatalf("second run = %+v", runs[0])
		}
		// A full re-read whose oldest minutes leave TAPD before it reaches
		// them loses nothing: the archive already holds them.
		if runs := h.runAll(syncer.RunOptions{Full: true}); runs[0].Outcome != storage.OutcomeSuccess || len(runs[0].Warnings) > 0 {
			t.Fatalf("full re-read = %+v, want success without warnings", runs[0])
		}
		if st, _ = s.Status(ctx); len(st[0].Gaps) != 1 {
			t.Fatalf("gaps after the re-read = %+v, want only the first run's expired span", st[0].Gaps)
		}
	})
}

// TestServeTakesOverTheLeaseOfAGoneProcessAtOnce: serve's runs (here a
// manual trigger, as POST /api/v1/sync starts them) take over at once an
// unexpired lease whose holder was a process of this host that is gone, and
// mark its run abandoned, as sync does.
func TestServeTakesOverTheLeaseOfAGoneProcessAtOnce(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	gone := storage.ThisProcess(host)
	if gone.Started == "" {
		t.Skip("no /proc: a holder's liveness cannot be told here")
	}
	gone.PID = dead.Process.Pid
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1, Months: 1}, "10074561")
		ctx := context.Background()
		old := &storage.SyncRun{Workspace: "10074561", Trigger: syncer.TriggerCLI, Outcome: storage.OutcomeRunning, StartedAt: time.Now()}
		if err := h.store.CreateRun(ctx, old); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := h.store.TakeLease(ctx, "10074561", host+":1:x", host+":1", gone, time.Hour); err != nil || !ok {
			t.Fatalf("planting the dead holder's lease: %v %v", ok, err)
		}
		s := h.syncer()
		got, err := s.Trigger(ctx, "", false)
		if err != nil || len(got.Queued) != 1 {
			t.Fatalf("trigger = %+v, %v: the gone holder's target should be queued", got, err)
		}
		s.Wait()
		runs, err := h.store.ListRuns(ctx, "10074561", "", 10, 0)
		if err != nil || len(runs) != 2 || runs[0].Outcome != storage.OutcomeSuccess || runs[1].Outcome != storage.OutcomeAbandoned {
			t.Fatalf("runs = %+v, %v; want the new one succeeded and the dead one abandoned", runs, err)
		}
	})
}
