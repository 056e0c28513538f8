package syncer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// TestPHPEmptyPagesAreEmpty: a TAPD that encodes an empty page as PHP
// does ([] or {} for data, null or {} for records, [] for the label maps)
// costs no extra request and leaves every run a success.
func TestPHPEmptyPagesAreEmpty(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		requests := func(shape tapdtest.PHPEmpty) (int, []storage.SyncRun) {
			h := newHarness(t, dbURL, tapdtest.Options{Projects: 1, PHPEmpty: shape}, "10074561")
			first := h.runAll(syncer.RunOptions{})
			h.fake.Advance(20 * time.Minute) // nothing new: the next run's window is empty
			h.fake.ResetRequests()
			second := h.runAll(syncer.RunOptions{})
			return len(h.fake.Requests()), append(first, second...)
		}
		want, _ := requests("")
		for _, shape := range []tapdtest.PHPEmpty{tapdtest.EmptyDataList, tapdtest.EmptyDataObject, tapdtest.EmptyRecordsNull, tapdtest.EmptyRecordsObject} {
			n, runs := requests(shape)
			for _, r := range runs {
				if r.Outcome != storage.OutcomeSuccess || len(r.Warnings) > 0 {
					t.Fatalf("%s: run %s ended %s: %v %s", shape, r.Workspace, r.Outcome, r.Warnings, r.Error)
				}
			}
			if n != want {
				t.Fatalf("%s: the empty run sent %d requests, want %d as with records []", shape, n, want)
			}
		}
	})
}

// TestGreetingFailsTheRunAtOnce: a tapd.base_url that is not TAPD's API
// root gets TAPD's greeting; the run fails with one request, naming the
// key, and leaves no gap to retry.
func TestGreetingFailsTheRunAtOnce(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1}, "10074561")
		h.client.TAPD = newClient(t, h.fake, func(o *tapd.Options) { o.BaseURL += "/v2" })
		runs, err := h.syncer().RunAll(context.Background(), syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
		if err == nil || len(runs) != 1 {
			t.Fatalf("runs %+v, err %v: want one failed run", runs, err)
		}
		r := runs[0]
		if r.Outcome != storage.OutcomeFailed || !strings.Contains(r.Error, "tapd.base_url") || !strings.Contains(r.Error, "Hello world") {
			t.Fatalf("run ended %s with %q, want failed naming tapd.base_url", r.Outcome, r.Error)
		}
		if id := h.fake.Requests()[0].RequestID; !strings.Contains(r.Error, "request_id "+id) {
			t.Fatalf("run error %q lacks TAPD's request_id %s", r.Error, id)
		}
		if n := len(h.fake.Requests()); n != 1 {
			t.Fatalf("%d requests, want 1 (no retry, no halved pages)", n)
		}
		state, err := h.store.SyncState(context.Background(), "10074561")
		if err != nil {
			t.Fatal(err)
		}
		if gaps := state.Gaps(); len(gaps) != 0 {
			t.Fatalf("gaps %+v, want none", gaps)
		}
	})
}

// TestProjectsOfTheCapturedShape: TAPD's real projects list has the
// company among its projects and no category: projects:ID syncs the
// projects (a closed one too) and never the bare company id.
func TestProjectsOfTheCapturedShape(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 3, CaptureProjectList: true}, "projects:2001")
		h.fake.SetProjectStatus("10074562", "closed")
		runs := h.runAll(syncer.RunOptions{})
		if got := strings.Join(keysOf(runs), ","); got != "10074561,10074562,10074563" {
			t.Fatalf("runs for %s, want the three projects only", got)
		}
		for _, r := range runs {
			if r.Outcome != storage.OutcomeSuccess {
				t.Fatalf("run %s ended %s: %s", r.Workspace, r.Outcome, r.Error)
			}
		}
	})
}

// TestHorizonInAnyWording: TAPD's horizon is a day later than the mirror
// thinks and its 422 does not say 半年: the run finds TAPD's oldest minute
// anyway, mirrors everything from it, and does not fail.
func TestHorizonInAnyWording(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1, HorizonDays: 181, HorizonError: "start_time out of range"}, "10074561")
		h.opts.HorizonDays = 182
		runs := h.runAll(syncer.RunOptions{})
		r := runs[0]
		if r.Outcome == storage.OutcomeFailed {
			t.Fatalf("run failed: %s", r.Error)
		}
		if !strings.Contains(strings.Join(r.Warnings, "\n"), "beyond its half year") {
			t.Fatalf("warnings %v, want the refused span named", r.Warnings)
		}
		_, to := spanOf(runs...)
		h.assertMirror(h.expected(h.fake.Horizon().Truncate(time.Minute), to, "10074561"))
	})
}

// TestQuotaPenaltyLosesNothing: after one 429, TAPD refuses everything for
// 5 minutes (on its clock, which the client's waits move). The backfill of
// two projects sharing the account completes: nothing lost, no gap, every
// run a success, and only a handful of requests sent while refused.
func TestQuotaPenaltyLosesNothing(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 2}, "10074561", "10074562")
		h.opts.MaxConcurrent = 2
		// The client waits on TAPD's clock: the penalty's minutes pass there.
		h.client.TAPD = newClient(t, h.fake, func(o *tapd.Options) { o.Now, o.WaitUntil = h.fake.Now, h.fake.WaitUntil })
		h.fake.SetPenalty(5 * time.Minute)
		h.client.onCall = func(n int) {
			if n == 12 { // both runs are past their oldest windows
				h.fake.RateLimitStorm(1, false)
			}
		}
		start := h.fake.Now()
		runs := h.runAll(syncer.RunOptions{})
		for _, r := range runs {
			if r.Outcome != storage.OutcomeSuccess || len(r.Warnings) > 0 {
				t.Fatalf("run %s ended %s: %v %s", r.Workspace, r.Outcome, r.Warnings, r.Error)
			}
		}
		refused := 0
		for _, r := range h.fake.Requests() {
			if r.Status == 429 {
				refused++
			}
		}
		// The first refusal, the other run's request in flight, one probe
		// after 1m and one after 3m; the probe after 7m succeeds.
		if refused < 3 || refused > 4 {
			t.Fatalf("%d requests refused, want 3..4", refused)
		}
		if paused := h.fake.Now().Sub(start); paused < 7*time.Minute {
			t.Fatalf("TAPD's clock moved %v, want the client to have paused at least 7m", paused)
		}
		from, to := spanOf(runs...)
		h.assertMirror(h.expected(from, to, "10074561", "10074562"))
		for _, ws := range []string{"10074561", "10074562"} {
			state, err := h.store.SyncState(context.Background(), ws)
			if err != nil {
				t.Fatal(err)
			}
			if gaps := state.Gaps(); len(gaps) != 0 {
				t.Fatalf("%s: gaps %+v, want none", ws, gaps)
			}
		}
	})
}
