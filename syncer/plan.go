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

// split cuts w into about n minute-aligned windows of equal length, oldest
// first; ok is false for a window of one minute, which cannot be split.
func split(w Interval, n int) (parts []Interval, ok bool) {
	minutes := int(w.End.Sub(w.Start) / time.Minute)
	if minutes <= 1 {
		return nil, false
	}
	n = min(max(n, 2), minutes)
	start := w.Start
	for i := 1; i <= n; i++ {
		end := w.Start.Add(time.Duration(minutes*i/n) * time.Minute)
		if i == n {
			end = w.End
		}
		parts = append(parts, Interval{Start: start, End: end})
		start = end
	}
	return parts, true
}

// ceilMinute rounds t up to the next whole minute.
func ceilMinute(t time.Time) time.Time {
	tr := t.Truncate(time.Minute)
	if tr.Equal(t) {
		return t
	}
	return tr.Add(time.Minute)
}
