package storage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// TAPD's month total across windows: overlapping windows count their
// overlap once, a window apart from the span does not join it, and a window
// fetched again after a settle check adds what TAPD added.
func TestMonthTotalCountsOverlapsOnce(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		month := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
		at := func(min int) time.Time { return month.Add(time.Duration(min) * time.Minute) }
		// A record every minute of the first 100.
		var recs []storage.Activity
		for i := range 100 {
			recs = append(recs, mirrored(fmt.Sprint(i), at(i).Add(10*time.Second), "r"))
		}
		if _, err := s.UpsertMirrored(ctx, recs); err != nil {
			t.Fatal(err)
		}
		commit := func(from, to int, total int64, prior *int64) {
			t.Helper()
			w := storage.Interval{Start: at(from), End: at(to)}
			if err := s.CommitWindow(ctx, storage.WindowCommit{Workspace: "10074561", Window: w, Covered: []storage.Interval{w},
				Total: &storage.WindowTotal{Month: month, Span: w, Total: total, Prior: prior}}); err != nil {
				t.Fatal(err)
			}
		}
		check := func(what string, from, to int, total int64) {
			t.Helper()
			m, err := s.MonthTotals(ctx, month, month.AddDate(0, 1, 0))
			got := m["10074561"]
			if err != nil || len(got) != 1 || !got[0].Verified.Start.Equal(at(from)) || !got[0].Verified.End.Equal(at(to)) || got[0].VerifiedTotal != total {
				t.Fatalf("%s: %+v (%v), want [%d, %d) with %d", what, got, err, from, to, total)
			}
		}
		commit(0, 60, 60, nil)
		check("first window", 0, 60, 60)
		commit(55, 90, 35, nil) // 5 minutes of look-back: 5 records counted by both windows
		check("overlapping window", 0, 90, 90)
		commit(90, 100, 10, nil) // adjacent
		check("adjacent window", 0, 100, 100)
		// A record reaches TAPD late, inside the span: the next window's
		// look-back fetches it, and TAPD's total for the span counts it.
		time.Sleep(1100 * time.Millisecond) // ingested_at has whole seconds
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("late", at(97).Add(20*time.Second), "r")}); err != nil {
			t.Fatal(err)
		}
		commit(95, 100, 6, nil)
		check("look-back with a late record", 0, 100, 101)
		commit(200, 210, 0, nil) // apart and shorter: the span stays
		check("window apart", 0, 100, 101)
		prior := int64(10) // a settle check: TAPD now has 13 in [20, 30), the target had reported 10
		commit(20, 30, 13, &prior)
		check("fetched again", 0, 100, 104)
		if err := s.RecordSettleMonths(ctx, "10074561", at(300), []storage.SettleMonth{{Month: month, Span: storage.Interval{Start: at(0), End: at(100)}, Remote: 104, Reported: 101}}); err != nil {
			t.Fatal(err)
		}
		m, _ := s.MonthTotals(ctx, month, month.AddDate(0, 1, 0))
		if got := m["10074561"][0]; got.SettleTotal != 104 || got.SettleReported != 101 || !got.SettledAt.Equal(at(300)) || got.VerifiedTotal != 104 {
			t.Fatalf("after a settle check: %+v", got)
		}
	})
}
