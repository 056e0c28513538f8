package syncer

import (
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// Interval is a half-open span [Start, End) of TAPD time, minute-aligned.
type Interval = storage.Interval

// splitByMonth cuts span into windows that each stay inside one calendar
// month of loc (TAPD refuses a start and end in different months).
func splitByMonth(span Interval, loc *time.Location) []Interval {
	var out []Interval
	for start := span.Start; start.Before(span.End); {
		s := start.In(loc)
		nextMonth := time.Date(s.Year(), s.Month()+1, 1, 0, 0, 0, 0, loc)
		end := span.End
		if nextMonth.Before(end) {
			end = nextMonth
		}
		out = append(out, Interval{Start: start, End: end})
		start = end
	}
	return out
}

// halve splits w at a minute boundary near its middle; ok is false for a
// window of one minute, which cannot be split further.
func halve(w Interval) (older, newer Interval, ok bool) {
	if w.End.Sub(w.Start) <= time.Minute {
		return w, w, false
	}
	mid := w.Start.Add(w.End.Sub(w.Start) / 2).Truncate(time.Minute)
	if !mid.After(w.Start) {
		mid = w.Start.Add(time.Minute)
	}
	return Interval{Start: w.Start, End: mid}, Interval{Start: mid, End: w.End}, true
}

// ceilMinute rounds t up to the next whole minute.
func ceilMinute(t time.Time) time.Time {
	tr := t.Truncate(time.Minute)
	if tr.Equal(t) {
		return t
	}
	return tr.Add(time.Minute)
}
