package syncer

import (
	"testing"
	"time"
)

func TestWindowRequestsFollowPagingAndSplits(t *testing.T) {
	s := New(Options{TAPD: zoneOnly{sh}})
	for n, want := range map[int]int{0: 1, 1: 1, 200: 1, 201: 2, 5000: 25, 5001: 1 + 2*13, 12000: 1 + 3*20} {
		if got := s.windowRequests(n); got != want {
			t.Errorf("a window of %d records: %d requests, want %d", n, got, want)
		}
	}
	// The oldest window, two days of 1000 records, is fetched as its first
	// day after a look at page 1 (1 + 3 pages), then the rest (3 pages);
	// later windows whole.
	h := at("2026-06-01 00:00")
	months := []MonthVolume{{Start: h, End: h.Add(48 * time.Hour), Records: 1000},
		{Start: h.Add(48 * time.Hour), End: h.Add(96 * time.Hour), Records: 1000}}
	if got := s.backfillRequests(months); got != 1+3+3+5 {
		t.Errorf("backfill of %v: %d requests, want %d", months, got, 1+3+3+5)
	}
}

// TestEstimateSaysWhatExpiresBeforeItIsReached: at 6 requests a minute,
// the targets' oldest windows in turn, the second target's is fetched after
// 1 + 2 + 101 requests (17.3 minutes): that much of its oldest window's
// TAPD time expires first.
func TestEstimateSaysWhatExpiresBeforeItIsReached(t *testing.T) {
	s := New(Options{TAPD: zoneOnly{sh}})
	month := func(n int) MonthVolume {
		st := at("2026-06-01 00:00")
		return MonthVolume{Start: st, End: st.Add(1000 * time.Minute), Records: n}
	}
	d := Diagnosis{Targets: []TargetVolume{
		{Target: "a", Months: []MonthVolume{month(400)}, Records: 400, Requests: 2},
		{Target: "b", Months: []MonthVolume{month(20000)}, Records: 20000, Requests: 101},
	}}
	s.estimate(&d, 1, 6)
	if e := d.Estimate; e.Requests != 104 || e.Records != 20400 || e.Minutes != 17.3 {
		t.Fatalf("estimate %+v", e)
	}
	a, b := d.Targets[0].AtRisk, d.Targets[1].AtRisk
	// a is reached after 3 requests, 0.5 minutes: 0.05 % of 400 records rounds to none.
	if a != nil {
		t.Fatalf("a at risk: %+v", a)
	}
	// b: 17.3 of 1000 minutes of 20000 records.
	if b == nil || b.Minutes != 17.3 || b.Records != 347 || d.Estimate.AtRisk != 347 {
		t.Fatalf("b at risk: %+v (total %d)", b, d.Estimate.AtRisk)
	}
	if len(d.Advice) != 1 {
		t.Fatalf("advice: %q", d.Advice)
	}
	unlimited := Diagnosis{Targets: []TargetVolume{{Target: "b", Months: []MonthVolume{month(20000)}, Requests: 101}}}
	s.estimate(&unlimited, 0, 0) // no client-side limit: no time, nothing to tell at risk
	if unlimited.Estimate.Minutes != 0 || unlimited.Estimate.AtRisk != 0 || unlimited.Targets[0].AtRisk != nil {
		t.Fatalf("without a quota: %+v", unlimited)
	}
	// A backfill slower than the horizon: every chunk fetched after its
	// start expired loses its oldest part, later chunks too: the first (one
	// request, 20 minutes) all 10 of its minutes, the second (fetched at 40
	// minutes, starting at 10) 30 of its 1000 minutes, 6 of 200 records.
	h := at("2026-06-01 00:00")
	slow := Diagnosis{Targets: []TargetVolume{{Target: "c", Records: 210, Months: []MonthVolume{
		{Start: h, End: h.Add(10 * time.Minute), Records: 10},
		{Start: h.Add(10 * time.Minute), End: h.Add(1010 * time.Minute), Records: 200}, // one page
	}}}}
	s.estimate(&slow, 0, 0.05) // a request every 20 minutes
	if r := slow.Targets[0].AtRisk; r == nil || r.Records != 10+6 || r.Minutes != 10+30 {
		t.Fatalf("slow backfill at risk: %+v", r)
	}
}
