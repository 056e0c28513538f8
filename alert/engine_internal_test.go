package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// TestFailedFlushReloadsMemory: when writing a step's state fails, the
// retried step starts from the stored memory, so a threshold counts each
// matching record once (3 stay 3, not 6 that would fire a rule of 5).
func TestFailedFlushReloadsMemory(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		now := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
		download := func(n int) {
			var batch []storage.Activity
			for i := range n {
				batch = append(batch, storage.Activity{Platform: "tapd", Serial: "20001", ActionType: "download", Username: "alice",
					Timestamp: now.Add(time.Duration(i-10) * time.Minute), Source: storage.SourceTAPD,
					SourceID: fmt.Sprintf("%d-%d", n, i), WorkspaceID: "20001"})
			}
			if _, err := s.UpsertMirrored(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
		e, err := New(Options{Store: s, Now: func() time.Time { return now }, Rules: []config.AlertRule{{Name: "bulk",
			Match: config.AlertMatch{ActionType: "download"}, Threshold: &config.AlertThreshold{Count: 5, Window: config.Duration{Duration: time.Hour}}}}})
		if err != nil {
			t.Fatal(err)
		}
		download(3)
		failed := false
		encodeState = func(v any) ([]byte, error) {
			if !failed {
				failed = true
				return nil, errors.New("planted")
			}
			return json.Marshal(v)
		}
		t.Cleanup(func() { encodeState = json.Marshal })
		if _, err := e.Step(ctx); err == nil {
			t.Fatal("the step whose flush failed reported no error")
		}
		if err := e.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		matches := func() int {
			rows, err := s.AlertState(ctx, "bulk")
			if err != nil {
				t.Fatal(err)
			}
			var st keyState
			if err := json.Unmarshal([]byte(rows["alice"]), &st); err != nil {
				t.Fatalf("state %q: %v", rows["alice"], err)
			}
			return len(st.Matches)
		}
		if n := matches(); n != 3 {
			t.Fatalf("%d matches counted after the retry, want the 3 records", n)
		}
		if got, _ := s.ListAlertFirings(ctx, storage.AlertQuery{Limit: 10}); len(got) != 0 {
			t.Fatalf("3 records fired a threshold of 5: %+v", got)
		}
		download(2)
		if err := e.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := s.ListAlertFirings(ctx, storage.AlertQuery{Limit: 10})
		if err != nil || len(got) != 1 || got[0].Count != 5 {
			t.Fatalf("firings %+v (%v), want one of 5 records", got, err)
		}
	})
}
