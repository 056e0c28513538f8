package syncer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/tapd"
)

var sh = time.FixedZone("CST", 8*3600)

func at(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04", s, sh)
	if err != nil {
		panic(err)
	}
	return t
}

func TestSplitByMonthNeverSpansTwoMonths(t *testing.T) {
	got := splitByMonth(Interval{Start: at("2026-05-27 21:15"), End: at("2026-07-02 10:00")}, sh)
	want := []Interval{
		{Start: at("2026-05-27 21:15"), End: at("2026-06-01 00:00")},
		{Start: at("2026-06-01 00:00"), End: at("2026-07-01 00:00")},
		{Start: at("2026-07-01 00:00"), End: at("2026-07-02 10:00")},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if !got[i].Start.Equal(want[i].Start) || !got[i].End.Equal(want[i].End) {
			t.Fatalf("window %d = %v, want %v", i, got[i], want[i])
		}
		// The query's end_time is End−1m: still in Start's month.
		if last := got[i].End.Add(-time.Minute).In(sh); last.Month() != got[i].Start.In(sh).Month() {
			t.Fatalf("window %d spans two months: %v", i, got[i])
		}
	}
	// Month boundaries are TAPD's (UTC+8), not UTC: 2026-06-01 00:00 +08 is May 31 in UTC.
	if got := splitByMonth(Interval{Start: at("2026-05-31 23:00"), End: at("2026-06-01 01:00")}, sh); len(got) != 2 {
		t.Fatalf("boundary in TAPD's zone not honoured: %v", got)
	}
}

func TestSplitIsMinuteAlignedAndStopsAtOneMinute(t *testing.T) {
	w := Interval{Start: at("2026-06-01 00:00"), End: at("2026-06-01 00:10")}
	for n, want := range map[int]int{1: 2, 3: 3, 7: 7, 50: 10} {
		parts, ok := split(w, n)
		if !ok || len(parts) != want || !parts[0].Start.Equal(w.Start) || !parts[len(parts)-1].End.Equal(w.End) {
			t.Fatalf("split(%v, %d) = %v, want %d parts covering it", w, n, parts, want)
		}
		for i, p := range parts {
			if p.End.Sub(p.Start) < time.Minute || p.End.Sub(p.Start)%time.Minute != 0 || (i > 0 && !p.Start.Equal(parts[i-1].End)) {
				t.Fatalf("split(%v, %d): part %d = %v", w, n, i, p)
			}
		}
	}
	if _, ok := split(Interval{Start: w.Start, End: w.Start.Add(time.Minute)}, 4); ok {
		t.Fatal("a one-minute window was split")
	}
}

func TestPlan(t *testing.T) {
	s := New(Options{TAPD: zoneOnly{sh}, Overlap: 5 * time.Minute})
	now := at("2026-11-25 12:00").Add(30 * time.Second)
	horizon := at("2026-05-27 12:00") // now − 182 days on TAPD's calendar, down to its minute
	cases := []struct {
		name  string
		state storage.SyncState
		ro    RunOptions
		first time.Time
		n     int
	}{
		{"first run backfills the half year", storage.SyncState{}, RunOptions{}, horizon, 7},
		{"incremental resumes at checkpoint − overlap", storage.SyncState{Origin: horizon, HighWater: at("2026-11-25 11:00"),
			Coverage: []Interval{{Start: horizon, End: at("2026-11-25 11:00")}}}, RunOptions{}, at("2026-11-25 10:55"), 1},
		{"unverified hole inside the half year is retried first", storage.SyncState{Origin: horizon, HighWater: at("2026-11-25 11:00"),
			Coverage: []Interval{{Start: horizon, End: at("2026-08-01 00:00")}, {Start: at("2026-08-02 00:00"), End: at("2026-11-25 11:00")}}},
			RunOptions{}, at("2026-08-01 00:00"), 2},
		{"full ignores the checkpoint", storage.SyncState{Origin: horizon, HighWater: at("2026-11-25 11:00")}, RunOptions{Full: true}, horizon, 7},
		{"a checkpoint older than the horizon restarts at the horizon", storage.SyncState{Origin: at("2026-01-01 00:00"),
			HighWater: at("2026-02-01 00:00"), Coverage: []Interval{{Start: at("2026-01-01 00:00"), End: at("2026-02-01 00:00")}}}, RunOptions{}, horizon, 7},
	}
	for _, tc := range cases {
		windows, h, to := s.plan(tc.state, tc.ro, now)
		// The last window ends a minute before the current one, so even an
		// inclusive end_time minute returns only closed minutes.
		if !h.Equal(horizon) || !to.Equal(at("2026-11-25 11:59")) {
			t.Fatalf("%s: horizon %v to %v", tc.name, h, to)
		}
		if len(windows) != tc.n || !windows[0].Start.Equal(tc.first) || !windows[len(windows)-1].End.Equal(to) {
			t.Errorf("%s: windows %v; want %d starting %v", tc.name, windows, tc.n, tc.first)
		}
	}
}

// zoneOnly is a TAPD that only knows its zone (planning asks nothing else).
type zoneOnly struct{ loc *time.Location }

func (z zoneOnly) Location() *time.Location { return z.loc }
func (zoneOnly) MemberActivityLog(context.Context, tapd.Query) (tapd.Page, error) {
	return tapd.Page{}, errors.New("not used")
}
func (zoneOnly) Projects(context.Context, string) ([]tapd.Project, error) {
	return nil, errors.New("not used")
}

func TestHorizonIsOnTAPDsCalendarWhateverTheServerZone(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no tzdata for America/New_York")
	}
	s := New(Options{TAPD: zoneOnly{sh}})
	now := at("2026-11-25 12:00") // New York is on EST now and was on EDT 182 days ago
	want := at("2026-05-27 12:00")
	if got := s.horizonAt(now.In(ny)); !got.Equal(want) {
		t.Fatalf("horizon from a New York clock = %v, want %v (TAPD's calendar, not the server's)", got, want)
	}
}

func TestQueryEndOverlapsAMinuteButNeverCrossesAMonth(t *testing.T) {
	r := &runState{s: New(Options{TAPD: zoneOnly{sh}})}
	mid := Interval{Start: at("2026-06-10 00:00"), End: at("2026-06-10 08:00")}
	if got := r.queryEnd(mid); !got.Equal(mid.End) {
		t.Fatalf("mid-month window asks end_time %v, want its end %v", got, mid.End)
	}
	// 2026-07-01 00:00 in TAPD's zone: end_time must stay in June.
	monthEnd := Interval{Start: at("2026-06-20 00:00"), End: at("2026-07-01 00:00")}
	if got := r.queryEnd(monthEnd); !got.Equal(at("2026-06-30 23:59")) {
		t.Fatalf("month-end window asks end_time %v, want June's last minute", got)
	}
}
