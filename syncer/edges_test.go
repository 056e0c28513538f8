package syncer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// lastMinuteOfAMonth reports whether t falls in the last minute of a month
// in TAPD's zone: the minute an end-exclusive TAPD cannot serve.
func lastMinuteOfAMonth(t time.Time) bool {
	next := t.Truncate(time.Minute).Add(time.Minute).In(tapdtest.Shanghai)
	return next.Day() == 1 && next.Hour() == 0 && next.Minute() == 0
}

// TestBothEndMinuteSemanticsLoseNothing backfills months dense enough to
// split, with records planted in the seconds :01–:59 of the minute before
// every cut, against a TAPD whose end_time minute is inclusive and one
// whose end_time minute is exclusive.
func TestBothEndMinuteSemanticsLoseNothing(t *testing.T) {
	for _, exclusive := range []bool{false, true} {
		name := map[bool]string{false: "inclusive", true: "exclusive"}[exclusive]
		t.Run(name, func(t *testing.T) {
			storagetest.Each(t, func(t *testing.T, dbURL string) {
				h := newHarness(t, dbURL, tapdtest.Options{Projects: 1, Months: 7, RecordsPerDay: 10, EndExclusive: exclusive}, "10074561")
				h.opts.SplitAbove = 300 // about a week a window: many cuts
				// A day with a record at hh:mm:59 of every minute: the window
				// holding it is split down to parts of ≤ 300 records, so several
				// cuts fall inside it, each right after a record at :59.
				day := time.Date(2026, 8, 12, 0, 0, 0, 0, tapdtest.Shanghai)
				for m := range 24 * 60 {
					h.fake.AddRecords("10074561", day.Add(time.Duration(m)*time.Minute+59*time.Second), 1)
				}
				// And the last seconds of months (the same-month rule).
				for m := fakeNow.AddDate(0, -5, 0); m.Before(fakeNow); m = m.AddDate(0, 1, 0) {
					first := time.Date(m.Year(), m.Month(), 1, 0, 0, 0, 0, tapdtest.Shanghai)
					h.fake.AddRecords("10074561", first.Add(-time.Second), 2)             // 23:59:59 of the month before
					h.fake.AddRecords("10074561", first.Add(-time.Minute-time.Second), 1) // 23:58:59
				}
				runs := h.runAll(syncer.RunOptions{})
				from, to := spanOf(runs...)
				want := h.expected(from, to, "10074561")
				if exclusive {
					kept := want[:0]
					for _, r := range want {
						if !lastMinuteOfAMonth(r.Created) {
							kept = append(kept, r)
						}
					}
					want = kept
				}
				h.assertMirror(want)
				st, _ := h.syncer().Status(context.Background())
				unreachable := 0
				for _, g := range st[0].Gaps {
					if g.Reason != storage.ReasonUnreachableMinute || g.End.Sub(g.Start) != time.Minute || g.End.In(tapdtest.Shanghai).Day() != 1 {
						t.Fatalf("unexpected gap %+v", g)
					}
					unreachable++
				}
				if exclusive && (unreachable < 5 || runs[0].Outcome != storage.OutcomeSuccess) {
					t.Fatalf("end-exclusive TAPD: %d unreachable minutes reported, run %s", unreachable, runs[0].Outcome)
				}
				if !exclusive && unreachable != 0 {
					t.Fatalf("inclusive TAPD: %d minutes reported unreachable", unreachable)
				}
				for _, c := range st[0].Covered {
					for _, g := range st[0].Gaps {
						if g.Start.Before(c.End) && c.Start.Before(g.End) {
							t.Fatalf("gap %v inside verified coverage %v", g, c)
						}
					}
				}
				// The probe happened once and was kept.
				if v, _ := h.store.Meta(context.Background(), "tapd.end_time_minute"); v != name {
					t.Fatalf("learned end_time semantics %q, want %q", v, name)
				}
			})
		})
	}
}

func TestSmallerPagesThanAskedAndFailingLargePages(t *testing.T) {
	for name, o := range map[string]tapdtest.Options{"perPage below limit": {MaxPerPage: 50}, "large pages fail": {FailPagesAbove: 60}} {
		t.Run(name, func(t *testing.T) {
			storagetest.Each(t, func(t *testing.T, dbURL string) {
				o.Projects, o.Months = 1, 2
				h := newHarness(t, dbURL, o, "10074561")
				runs := h.runAll(syncer.RunOptions{})
				if runs[0].Outcome != storage.OutcomeSuccess {
					t.Fatalf("run %+v", runs[0])
				}
				from, to := spanOf(runs...)
				h.assertMirror(h.expected(from, to, "10074561"))
			})
		})
	}
}

func TestAWindowThatKeepsFailingBecomesAGapAndTheRunGoesOn(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1}, "10074561")
		july := time.Date(2026, 7, 1, 0, 0, 0, 0, tapdtest.Shanghai)
		clear := h.fake.FailWindow(july, july.AddDate(0, 1, 0), tapdtest.Fault503)
		runs := h.runAll(syncer.RunOptions{})
		r := runs[0]
		if r.Outcome != storage.OutcomePartial || !strings.Contains(strings.Join(r.Warnings, "\n"), "kept failing") {
			t.Fatalf("run with a failing month = %+v", r)
		}
		// Everything but July is mirrored; July is a gap with its reason.
		from, to := spanOf(runs...)
		var want []tapdtest.Record
		for _, rec := range h.expected(from, to, "10074561") {
			if rec.Created.Before(july) || !rec.Created.Before(july.AddDate(0, 1, 0)) {
				want = append(want, rec)
			}
		}
		h.assertMirror(want)
		st, _ := h.syncer().Status(context.Background())
		if len(st[0].Gaps) != 1 || !st[0].Gaps[0].Start.Equal(july) || !strings.Contains(st[0].Gaps[0].Reason, "kept failing") {
			t.Fatalf("gaps %+v", st[0].Gaps)
		}
		if st[0].FreshAt == nil {
			t.Fatal("a partial run that committed its newest window did not make the target fresh")
		}
		// TAPD recovers: the next run fills the gap.
		clear()
		h.fake.Advance(10 * time.Minute)
		runs = h.runAll(syncer.RunOptions{})
		if runs[0].Outcome != storage.OutcomeSuccess {
			t.Fatalf("run after recovery = %+v", runs[0])
		}
		_, to = spanOf(runs...)
		h.assertMirror(h.expected(from, to, "10074561"))
	})
}

func TestHostileBytesDoNotStallAWorkspace(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1, Months: 1}, "10074561")
		at := fakeNow.Add(-24 * time.Hour)
		nul := h.fake.AddRecord("10074561", at, func(r *tapdtest.Record) { r.Title = "a\x00b"; r.Creator = "ev\x00e" })
		bad := h.fake.AddRecord("10074561", at.Add(time.Minute), func(r *tapdtest.Record) { r.TitleJSON = "caf\xe9 \\ud800!" })
		runs := h.runAll(syncer.RunOptions{})
		if runs[0].Outcome != storage.OutcomeSuccess {
			t.Fatalf("run = %+v", runs[0])
		}
		got, _ := h.store.ListActivities(context.Background(), storage.Filter{Source: storage.SourceTAPD}, 100000, 0)
		found := 0
		for _, a := range got {
			x := a.ExtraFields()
			switch a.SourceID {
			case nul.ID:
				found++
				if x["title"] != "ab" || a.Username != "eve" || x["title_raw"] != `"a\x00b"` || x["creator_raw"] != `"ev\x00e"` {
					t.Fatalf("NUL record stored as %+v %v", a, x)
				}
			case bad.ID:
				found++
				if !strings.Contains(x["title"], "\uFFFD") {
					t.Fatalf("invalid UTF-8 record stored as %v", x)
				}
			}
		}
		if found != 2 {
			t.Fatalf("%d of the 2 hostile records stored", found)
		}
	})
}

func TestTAPDClampingAnOldStartLosesNothingItServes(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1, HorizonClamp: true}, "10074561")
		h.opts.HorizonDays = 183 // asks a day too early; TAPD answers from its horizon
		runs := h.runAll(syncer.RunOptions{})
		if runs[0].Outcome != storage.OutcomeSuccess {
			t.Fatalf("run = %+v", runs[0])
		}
		_, to := spanOf(runs...)
		h.assertMirror(h.expected(h.fake.Horizon().Truncate(time.Minute), to, "10074561"))
	})
}

func TestARecordChangedAtTAPDIsUpdatedWithItsHistoryKept(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		h := newHarness(t, dbURL, tapdtest.Options{Projects: 1, Months: 1, RecordsPerDay: 2}, "10074561")
		h.runAll(syncer.RunOptions{})
		h.fake.RenameProject("10074561", "改名后的项目")
		h.fake.Advance(time.Minute)
		runs := h.runAll(syncer.RunOptions{Full: true})
		stored, _ := h.store.CountActivities(context.Background(), storage.Filter{Source: storage.SourceTAPD})
		if runs[0].Updated != int(stored) || runs[0].Inserted != 0 {
			t.Fatalf("rename at TAPD: run %+v, %d stored", runs[0], stored)
		}
		var history int
		if err := h.store.DB().Get(&history, `SELECT COUNT(*) FROM activity_history`); err != nil || history != int(stored) {
			t.Fatalf("%d earlier versions kept for %d records (%v)", history, stored, err)
		}
		got, _ := h.store.ListActivities(context.Background(), storage.Filter{}, 1, 0)
		if got[0].ExtraFields()["project_name"] != "改名后的项目" {
			t.Fatalf("stored project_name %q", got[0].ExtraFields()["project_name"])
		}
	})
}
