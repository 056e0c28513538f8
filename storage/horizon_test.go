package storage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// What only the mirror holds: records older than TAPD's horizon, in total
// (each record once) and per target (each target that reported it), live
// records only, with the oldest one's time.
func TestRecordsBeyondHorizon(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		s.SetCountsZone(time.FixedZone("CST", 8*3600))
		horizon := t0.Add(10*24*time.Hour + 7*time.Hour + 30*time.Minute) // inside a day and an hour: every kind of edge
		if b, err := s.RecordsBeyond(ctx, horizon); err != nil || b.Records != 0 || b.Oldest != nil {
			t.Fatalf("empty archive: %+v, %v", b, err)
		}
		// 30 records of a project, one every 9h from t0 (t0+9h×n < horizon for n ≤ 27)...
		var batch []storage.Activity
		for i := range 30 {
			batch = append(batch, mirrored(fmt.Sprint(i), t0.Add(time.Duration(i)*9*time.Hour+time.Duration(i)*time.Second), "t"))
		}
		// ...and a company-level record, older than all of them.
		company := mirrored("c1", t0.Add(-30*time.Hour), "c")
		company.Serial, company.WorkspaceID = "2001", "company:2001"
		local := mirrored("", t0.Add(-90*time.Hour), "l") // a local record is no mirrored evidence
		local.Source, local.WorkspaceID = storage.SourceLocal, ""
		if _, err := s.UpsertMirrored(ctx, append(batch, company)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.InsertActivity(ctx, local); err != nil {
			t.Fatal(err)
		}
		// The company-wide stream reports the project's first 5 records too.
		var viaCompany []storage.Activity
		for _, a := range batch[:5] {
			a.WorkspaceID = "all:2001"
			viaCompany = append(viaCompany, a)
		}
		if _, err := s.UpsertReread(ctx, viaCompany); err != nil {
			t.Fatal(err)
		}
		old := 0
		for _, a := range batch {
			if a.Timestamp.Before(horizon) {
				old++
			}
		}
		wantTotal := int64(old + 1) // the company-level record
		total, err := s.RecordsBeyond(ctx, horizon)
		if err != nil || total.Records != wantTotal || total.Oldest == nil || !total.Oldest.Equal(company.Timestamp) {
			t.Fatalf("in total: %+v, %v; want %d records, oldest %v", total, err, wantTotal, company.Timestamp)
		}
		if slow, _ := s.CountByScan(ctx, storage.Filter{Source: storage.SourceTAPD, Until: horizon}); slow != total.Records {
			t.Fatalf("total %d, COUNT(*) %d", total.Records, slow)
		}
		targets := []string{"10074561", "all:2001", "company:2001", "99"}
		per, err := s.ReportedBeyond(ctx, horizon, targets)
		if err != nil {
			t.Fatal(err)
		}
		check := func(target string, n int64, oldest time.Time) {
			t.Helper()
			b := per[target]
			if b.Records != n || (n > 0) != (b.Oldest != nil) || b.Oldest != nil && !b.Oldest.Equal(oldest) {
				t.Fatalf("%s: %+v, want %d records, oldest %v (all: %v)", target, b, n, oldest, per)
			}
		}
		check("10074561", int64(old), t0)
		check("all:2001", 5, t0)
		check("company:2001", 1, company.Timestamp)
		check("99", 0, time.Time{}) // reported nothing
		if _, listed := per[""]; listed {
			t.Fatalf("local records counted as a target's: %v", per)
		}
		// Deleted, a record is no longer held (its membership stays: TAPD did report it).
		if _, err := s.DeleteActivity(ctx, idBySourceID(t, s, "0")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DeleteActivity(ctx, idBySourceID(t, s, "c1")); err != nil {
			t.Fatal(err)
		}
		per, _ = s.ReportedBeyond(ctx, horizon, targets)
		check("10074561", int64(old-1), batch[1].Timestamp)
		check("all:2001", 4, batch[1].Timestamp)
		check("company:2001", 0, time.Time{})
		total, err = s.RecordsBeyond(ctx, horizon)
		if err != nil || total.Records != wantTotal-2 || total.Oldest == nil || !total.Oldest.Equal(batch[1].Timestamp) {
			t.Fatalf("in total after two deletes: %+v, %v", total, err)
		}
		// The horizon before every record: nothing only the mirror holds.
		if b, err := s.RecordsBeyond(ctx, t0.Add(-100*time.Hour)); err != nil || b.Records != 0 || b.Oldest != nil {
			t.Fatalf("before every record: %+v, %v", b, err)
		}
		per, _ = s.ReportedBeyond(ctx, t0.Add(-100*time.Hour), targets)
		for _, target := range targets {
			check(target, 0, time.Time{})
		}
	})
}

// BenchmarkRecordsBeyondHorizon: what only the mirror holds, in all (the
// daily counts) and per target, against COUNT(*) of the same records (the
// baseline), on a year of records from 4 targets, half of them older than
// the horizon.
func BenchmarkRecordsBeyondHorizon(b *testing.B) {
	const n = 100_000
	for _, dialect := range storagetest.Dialects {
		s := storagetest.Open(b, storagetest.URL(b, dialect))
		ctx := context.Background()
		start := t0.AddDate(-1, 0, 0)
		every := 365 * 24 * time.Hour / n
		var batch []storage.Activity
		for i := range n {
			a := mirrored(fmt.Sprint(i), start.Add(time.Duration(i)*every), "t")
			a.WorkspaceID = fmt.Sprint(10074561 + i%4)
			batch = append(batch, a)
			if len(batch) == 5000 || i == n-1 {
				if _, err := s.UpsertMirrored(ctx, batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		horizon := start.AddDate(0, 6, 0).Add(7 * time.Hour)
		b.Run(dialect+"/total", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.RecordsBeyond(ctx, horizon); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(dialect+"/count-only", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.CountActivities(ctx, storage.Filter{Source: storage.SourceTAPD, Until: horizon}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(dialect+"/per-target", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.ReportedBeyond(ctx, horizon, []string{"10074561", "10074562", "10074563", "10074564"}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(dialect+"/baseline-count-scan", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.CountByScan(ctx, storage.Filter{Source: storage.SourceTAPD, Until: horizon}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
