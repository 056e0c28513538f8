package storage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// assertCountsExact compares every countable filter's fast count with
// COUNT(*) over the table, at day and hour edges and inside hours.
func assertCountsExact(t *testing.T, s *storage.Store, when string) {
	t.Helper()
	day := 24 * time.Hour
	bounds := []time.Time{{}, t0.Add(-day), t0.Add(-day + 11*time.Hour + 45*time.Minute), t0, t0.Add(50 * time.Minute),
		t0.Add(90 * time.Minute), t0.Add(day), t0.Add(3*day + 7*time.Hour), t0.Add(3*day + 19*time.Hour + 25*time.Minute), t0.Add(40 * day)}
	filters := []storage.Filter{{}, {Platform: "tapd"}, {Serial: "10074561"}, {Serial: "S2"}, {ActionType: "add"}, {Source: storage.SourceLocal},
		{Platform: "tapd", Serial: "10074561", ActionType: "add", Source: storage.SourceTAPD}}
	assertCountsExactAt(t, s, when, filters, bounds)
}

// assertCountsExactAt compares each filter's fast count with COUNT(*) for
// every pair of bounds (the zero time: no bound).
func assertCountsExactAt(t *testing.T, s *storage.Store, when string, filters []storage.Filter, bounds []time.Time) {
	t.Helper()
	ctx := context.Background()
	for _, f := range filters {
		for _, since := range bounds {
			for _, until := range bounds {
				if !until.IsZero() && !since.IsZero() && !since.Before(until) {
					continue
				}
				f.Since, f.Until = since, until
				fast, err := s.CountActivities(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				slow, err := s.CountByScan(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				if fast != slow {
					t.Fatalf("after %s: count %+v = %d from the counts, %d by COUNT(*)", when, f, fast, slow)
				}
			}
		}
	}
}

// spread is n mirrored records from t0, every apart, a third of them
// another project's deletes.
func spread(n int, every time.Duration) []storage.Activity {
	var batch []storage.Activity
	for i := range n {
		a := mirrored(fmt.Sprint(i), t0.Add(time.Duration(i)*every), "t")
		if i%3 == 0 {
			a.Serial, a.ActionType = "S2", "delete"
		}
		batch = append(batch, a)
	}
	return batch
}

func TestDailyCountsStayExactAfterEveryKindOfWrite(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		shanghai, err := time.LoadLocation("Asia/Shanghai")
		if err != nil {
			t.Skip("no tzdata")
		}
		s.SetCountsZone(shanghai)
		if err := s.RebuildCounts(ctx); err != nil {
			t.Fatal(err)
		}
		batch := spread(3000, 17*time.Minute)
		if _, err := s.UpsertMirrored(ctx, batch); err != nil { // insert (COPY on PostgreSQL)
			t.Fatal(err)
		}
		assertCountsExact(t, s, "a bulk insert")
		batch[4].ActionType, batch[5].Timestamp, batch[6].Serial = "upload", batch[5].Timestamp.Add(50*time.Hour), "S9"
		batch = append(batch, mirrored("new", t0.Add(time.Hour), "n"))
		if _, err := s.UpsertReread(ctx, batch); err != nil { // updates, a conflict, a new row
			t.Fatal(err)
		}
		assertCountsExact(t, s, "an upsert with conflicts and changes")
		for i := range 20 {
			if _, err := s.InsertActivity(ctx, storage.Activity{Platform: "tiktok", Serial: "S2", ActionType: "post",
				Timestamp: t0.Add(time.Duration(i) * 5 * time.Hour), Source: storage.SourceLocal}); err != nil {
				t.Fatal(err)
			}
		}
		assertCountsExact(t, s, "local inserts")
		list, _ := s.ListActivities(ctx, storage.Filter{}, 5, 100)
		for _, a := range list {
			if _, err := s.DeleteActivity(ctx, a.ID); err != nil { // deletes (tombstones for mirrored ones)
				t.Fatal(err)
			}
		}
		assertCountsExact(t, s, "deletes")
		if _, err := s.Purge(ctx, storage.SourceLocal, t0.Add(50*time.Hour), "test: local after 50h"); err != nil {
			t.Fatal(err)
		}
		assertCountsExact(t, s, "a purge")
		if err := s.RebuildCounts(ctx); err != nil {
			t.Fatal(err)
		}
		assertCountsExact(t, s, "a rebuild")
		kolkata, err := time.LoadLocation("Asia/Kolkata") // days start at :30 of a UTC hour
		if err != nil {
			t.Fatal(err)
		}
		s.SetCountsZone(kolkata)
		if rebuilt, err := s.EnsureCounts(ctx); err != nil || !rebuilt {
			t.Fatalf("a change of zone rebuilt the counts: %v, %v", rebuilt, err)
		}
		assertCountsExact(t, s, "a change to a half-hour zone")
		if _, err := s.DeleteAllActivities(ctx); err != nil {
			t.Fatal(err)
		}
		assertCountsExact(t, s, "delete all")
	})
}

// TestUpgradeCountsStoredRowsByHour: migration 0010 fills the hourly counts
// from the rows already stored, so counts stay exact across the upgrade.
func TestUpgradeCountsStoredRowsByHour(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		if _, err := s.UpsertMirrored(ctx, spread(500, 23*time.Minute)); err != nil {
			t.Fatal(err)
		}
		exec(t, s, `DROP TABLE activity_hourly`)
		exec(t, s, `DELETE FROM schema_migrations WHERE version = '0010_hourly_counts'`)
		if _, err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		assertCountsExact(t, s, "the upgrade to hourly counts")
	})
}

// TestCountsWhereMidnightIsSkipped: in Havana clocks go from 23:59:59 to
// 01:00 on 2026-03-08, so that day begins at 05:00 UTC, not at a local
// midnight; and a time PostgreSQL would round into the next hour stays in
// the hour the counts placed it in.
func TestCountsWhereMidnightIsSkipped(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		havana, err := time.LoadLocation("America/Havana")
		if err != nil {
			t.Skip("no tzdata")
		}
		s.SetCountsZone(havana)
		if err := s.RebuildCounts(ctx); err != nil {
			t.Fatal(err)
		}
		at := func(d, h, m int) time.Time { return time.Date(2026, 3, d, h, m, 0, 0, time.UTC) }
		var batch []storage.Activity
		for i, ts := range []time.Time{at(7, 17, 30), at(8, 4, 30), at(8, 5, 0), at(8, 6, 15), at(9, 4, 59),
			at(8, 10, 0).Add(-400 * time.Nanosecond)} { // rounds to 10:00:00.000000
			batch = append(batch, mirrored(fmt.Sprint("h", i), ts, "t"))
		}
		if _, err := s.UpsertMirrored(ctx, batch); err != nil {
			t.Fatal(err)
		}
		assertCountsExactAt(t, s, "records around a skipped midnight", []storage.Filter{{}}, []time.Time{{}, at(1, 0, 0),
			at(7, 17, 0), at(8, 4, 0), at(8, 5, 0), at(8, 9, 0), at(8, 10, 0), at(8, 12, 0), at(9, 5, 0), at(20, 0, 0)})
	})
}
