package syncer_test

import (
	"context"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// The console's "resync since a date": a manual run that re-fetches from
// that date, not from the checkpoint and not the whole half year.
func TestTriggerSinceRefetchesFromTheDate(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1}, "10074561")
		h.runAll(syncer.RunOptions{})
		h.fake.Advance(time.Minute)
		s := h.syncer()
		since := h.fake.Now().AddDate(0, 0, -10).Truncate(time.Minute)
		got, err := s.TriggerSince(context.Background(), "10074561", since)
		if err != nil || len(got.Queued) != 1 {
			t.Fatalf("TriggerSince = %+v, %v", got, err)
		}
		s.Wait()
		runs, err := h.store.ListRuns(context.Background(), "10074561", "", 1, 0)
		if err != nil || len(runs) != 1 {
			t.Fatalf("runs = %v, %v", runs, err)
		}
		r := runs[0]
		if r.Trigger != syncer.TriggerManual || r.Outcome != storage.OutcomeSuccess || !r.WindowStart.Equal(since) {
			t.Fatalf("run = %+v, want a manual success from %v", r, since)
		}
		if r.Unchanged == 0 || r.Inserted != 0 {
			t.Fatalf("re-fetch since %v wrote %+v, want only unchanged records", since, r)
		}
	})
}
