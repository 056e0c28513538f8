package storage

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// DayCount is how many records fall on one calendar day.
type DayCount struct {
	Day   time.Time // the day's midnight in the zone asked for
	Count int64
}

// DailyCounts returns how many records matching f fall on each calendar day
// of loc, oldest day first; days without any are left out. f.After and
// f.Before are ignored. Filters the daily counts keep, in their zone, are
// answered from them (whole days) and from activity_log for the partial days
// at the edges; others by a GROUP BY over the matching rows.
func (s *Store) DailyCounts(ctx context.Context, f Filter, loc *time.Location) ([]DayCount, error) {
	f.After, f.Before = nil, nil
	from, to := f.Since, f.Until
	if from.IsZero() || to.IsZero() {
		oldest, newest, ok, err := s.ActivitySpan(ctx, f)
		if err != nil || !ok {
			return []DayCount{}, err
		}
		if from.IsZero() {
			from = oldest
		}
		if to.IsZero() {
			to = newest.Add(time.Second)
		}
	}
	f.Since, f.Until = from, to
	var days []dayRow
	var err error
	if f.countable() && loc.String() == s.zone().String() {
		days, err = s.daysFromCounts(ctx, f)
	} else {
		days, err = s.daysByScan(ctx, f, loc)
	}
	if err != nil {
		return nil, fmt.Errorf("counting activities per day: %w", err)
	}
	out := make([]DayCount, 0, len(days))
	for _, d := range days {
		start := dayStartIn(d.Day, loc)
		if n := len(out); n > 0 && out[n-1].Day.Equal(start) {
			out[n-1].Count += d.Count // an edge day summed with its whole-day part
			continue
		}
		out = append(out, DayCount{Day: start, Count: d.Count})
	}
	return out, nil
}

type dayRow struct {
	Day   int64 `db:"day"`
	Count int64 `db:"n"`
}

// daysByScan groups the matching rows of [f.Since, f.Until) by local day.
func (s *Store) daysByScan(ctx context.Context, f Filter, loc *time.Location) ([]dayRow, error) {
	if !f.Since.Before(f.Until) {
		return nil, nil
	}
	where, args := s.where(f)
	var rows []dayRow
	err := s.reads.SelectContext(ctx, &rows, s.rebind(`-- DailyCounts by scan
		SELECT `+s.localDayExpr(loc, f.Since, f.Until)+` AS day, COUNT(*) AS n FROM activity_log`+where+` GROUP BY 1 ORDER BY 1`), args...)
	return rows, err
}

// daysFromCounts reads whole days from the daily counts (kept in this
// zone) and scans only the partial days at the edges, as countFast does.
func (s *Store) daysFromCounts(ctx context.Context, f Filter) ([]dayRow, error) {
	first, last := s.dayOf(f.Since), s.dayOf(f.Until)
	if !s.dayStart(first).Equal(f.Since) {
		first++
	}
	if first >= last {
		return s.daysByScan(ctx, f, s.zone())
	}
	table, where, args := countRows("day", f, first, last)
	head, tail := f, f
	head.Until, tail.Since = s.dayStart(first), s.dayStart(last)
	before, err := s.daysByScan(ctx, head, s.zone())
	if err != nil {
		return nil, err
	}
	var whole []dayRow
	if err := s.reads.SelectContext(ctx, &whole, s.rebind(`-- DailyCounts from the daily counts
		SELECT day, SUM(n) AS n FROM `+table+where+
		` GROUP BY day HAVING SUM(n) > 0 ORDER BY day`), args...); err != nil {
		return nil, err
	}
	after, err := s.daysByScan(ctx, tail, s.zone())
	if err != nil {
		return nil, err
	}
	return slices.Concat(before, whole, after), nil
}

// ActivitySpan returns the times of the oldest and newest records matching
// f (After and Before ignored); ok is false when none match.
func (s *Store) ActivitySpan(ctx context.Context, f Filter) (oldest, newest time.Time, ok bool, err error) {
	f.After, f.Before = nil, nil
	where, args := s.where(f)
	// Two index-ordered single-row reads rather than MIN/MAX, which SQLite
	// only answers from an index without a WHERE clause.
	for _, q := range []struct {
		order string
		dst   *time.Time
	}{{"ASC", &oldest}, {"DESC", &newest}} {
		var ts []dbTime
		if err := s.reads.SelectContext(ctx, &ts, s.rebind(`SELECT timestamp FROM activity_log`+where+
			` ORDER BY timestamp `+q.order+`, id `+q.order+` LIMIT 1`), args...); err != nil {
			return oldest, newest, false, fmt.Errorf("reading the span of activities: %w", err)
		}
		if len(ts) == 0 {
			return oldest, newest, false, nil
		}
		*q.dst = ts[0].Time
	}
	return oldest, newest, true, nil
}

// localDayExpr is SQL for the local calendar day of a row's timestamp in
// loc, as days since 1970-01-01 (the local date's Unix day number). The
// zone's UTC offsets over [from, to) come from Go's zone database, so a
// daylight-saving zone buckets exactly as Go formats, on both dialects.
func (s *Store) localDayExpr(loc *time.Location, from, to time.Time) string {
	// dialect: SQLite stores Unix seconds, PostgreSQL TIMESTAMPTZ.
	epoch := "timestamp"
	if s.dialect == config.Postgres {
		epoch = "CAST(EXTRACT(EPOCH FROM timestamp) AS BIGINT)"
	}
	offsets := zoneOffsets(loc, from, to)
	offset := strconv.Itoa(offsets[len(offsets)-1].offset)
	if len(offsets) > 1 {
		var b strings.Builder
		b.WriteString("CASE")
		for _, o := range offsets[:len(offsets)-1] {
			fmt.Fprintf(&b, " WHEN %s < %d THEN %d", epoch, o.until.Unix(), o.offset)
		}
		fmt.Fprintf(&b, " ELSE %d END", offsets[len(offsets)-1].offset)
		offset = b.String()
	}
	// Floor division: both operands are whole seconds after 1970 here.
	return "((" + epoch + " + " + offset + ") / 86400)"
}

type zoneOffset struct {
	until  time.Time // the offset holds before this instant (zero: to the end)
	offset int       // seconds east of UTC
}

// maxZoneChanges bounds the CASE expression; a range with more offset
// changes (centuries of daylight saving) uses the last offsets it found.
const maxZoneChanges = 400

// zoneOffsets lists loc's UTC offsets over [from, to), oldest first.
func zoneOffsets(loc *time.Location, from, to time.Time) []zoneOffset {
	var out []zoneOffset
	t := from
	for {
		_, off := t.In(loc).Zone()
		_, end := t.In(loc).ZoneBounds()
		if n := len(out); n > 0 && out[n-1].offset == off {
			out[n-1].until = end // a change of abbreviation only
		} else {
			out = append(out, zoneOffset{until: end, offset: off})
		}
		if end.IsZero() || !end.Before(to) || len(out) >= maxZoneChanges {
			return out
		}
		t = end
	}
}
