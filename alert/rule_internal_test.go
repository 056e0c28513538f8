package alert

import (
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
)

func testRule(t *testing.T, c config.AlertRule) *rule {
	t.Helper()
	c.IgnoreOlderThan = &config.Duration{}
	r, err := compile(c, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestThresholdOutOfOrder: TAPD pages newest first, so matches arrive
// late; the window is the busiest one holding the new match, and a match
// more than two windows older than the newest is not counted.
func TestThresholdOutOfOrder(t *testing.T) {
	r := testRule(t, config.AlertRule{Name: "t", Threshold: &config.AlertThreshold{Count: 3, Window: config.Duration{Duration: 10 * time.Minute}}})
	base := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	feed := func(id int64, minutes int) (bool, int64, int64, int64) {
		f, ok := r.evaluate(id, &integrity.Record{ID: id, Username: "u", Timestamp: base.Add(time.Duration(minutes) * time.Minute)}, base)
		return ok, f.Count, f.FirstRecordID, f.LastRecordID
	}
	if ok, _, _, _ := feed(1, 30); ok {
		t.Fatal("fired at 1")
	}
	if ok, _, _, _ := feed(2, 0); ok { // 30 min before: another window
		t.Fatal("fired at 2")
	}
	if ok, _, _, _ := feed(3, -60); ok { // more than two windows before the newest: dropped
		t.Fatal("fired at 3")
	}
	if ok, _, _, _ := feed(4, 25); ok {
		t.Fatal("fired at 4")
	}
	ok, n, first, last := feed(5, 22) // 22, 25, 30: three within 10 minutes
	if !ok || n != 3 || first != 5 || last != 1 {
		t.Fatalf("fired %v count %d records %d..%d, want 3 from 5 to 1", ok, n, first, last)
	}
	for _, m := range r.state["u"].Matches {
		if m[1] == 3 {
			t.Fatal("the match two windows late was kept")
		}
	}
}

// TestWhenWrapsMidnight: a span like 22:00-06:00 covers the night.
func TestWhenWrapsMidnight(t *testing.T) {
	r := testRule(t, config.AlertRule{Name: "night", Match: config.AlertMatch{When: &config.AlertWhen{Hours: "22:00-06:00"}}})
	for hour, want := range map[int]bool{21: false, 22: true, 23: true, 0: true, 5: true, 6: false, 12: false} {
		got := r.matches(&integrity.Record{Timestamp: time.Date(2026, 1, 1, hour, 30, 0, 0, time.UTC)})
		if got != want {
			t.Errorf("%02d:30 matched %v, want %v", hour, got, want)
		}
	}
}

// TestThresholdBesideIgnoreOlderThan: a record older than
// ignore_older_than never fires but still counts for a young one within
// the window; one older than that by more than a window is not even
// remembered (a backfill's half year of records leaves no state).
func TestThresholdBesideIgnoreOlderThan(t *testing.T) {
	c := config.AlertRule{Name: "t", Threshold: &config.AlertThreshold{Count: 2, Window: config.Duration{Duration: time.Hour}}}
	c.IgnoreOlderThan = &config.Duration{Duration: 24 * time.Hour}
	r, err := compile(c, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	feed := func(id int64, ago time.Duration) bool {
		_, ok := r.evaluate(id, &integrity.Record{ID: id, Username: "u", Timestamp: now.Add(-ago)}, now)
		return ok
	}
	if feed(1, 90*24*time.Hour) || feed(2, 90*24*time.Hour+time.Minute) {
		t.Fatal("records of three months ago fired")
	}
	if len(r.state) != 0 || len(r.dirty) != 0 {
		t.Fatalf("records too old to share a window with a young one left state %v", r.state)
	}
	if feed(3, 24*time.Hour+30*time.Minute) { // old: it never fires itself
		t.Fatal("a record older than ignore_older_than fired")
	}
	if !feed(4, 23*time.Hour+45*time.Minute) { // 45 minutes after 3: two in the hour
		t.Fatal("the young record did not count the old one within its window")
	}
}

// The skip counts whole seconds, as windows do: a record just over
// ignore_older_than + window old by the clock can still be within the
// window of a young one once both are in seconds.
func TestThresholdSkipCountsWholeSeconds(t *testing.T) {
	c := config.AlertRule{Name: "t", Threshold: &config.AlertThreshold{Count: 2, Window: config.Duration{Duration: 10 * time.Second}}}
	c.IgnoreOlderThan = &config.Duration{Duration: time.Hour}
	r, err := compile(c, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 6, 1, 12, 0, 0, 500_000_000, time.UTC)
	x := now.Add(-time.Hour - 10*time.Second - 100*time.Millisecond) // 11:59:49 in seconds
	z := now.Add(-time.Hour)                                         // 11:59:59: young, 10 s after x
	r.evaluate(1, &integrity.Record{ID: 1, Username: "u", Timestamp: x}, now)
	if _, ok := r.evaluate(2, &integrity.Record{ID: 2, Username: "u", Timestamp: z}, now); !ok {
		t.Fatalf("records %d and %d are %d s apart, within the 10 s window, but the rule did not fire", x.Unix(), z.Unix(), z.Unix()-x.Unix())
	}
}
