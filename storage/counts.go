package storage

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// Exact counts that do not grow with the table: activity_daily holds, per
// day (in the configured zone) and per (source, platform, serial,
// action_type), how many records there are, activity_daily_total the same
// without serial, and activity_hourly per UTC hour without serial, all
// maintained in the same transaction as every write. A count sums the
// whole days, the whole hours of the partial days at the edges of
// since/until, and counts the partial hours left in activity_log itself
// (countFast).

// metaCountsZone keeps the zone the daily counts were built in; another zone
// needs a rebuild.
const metaCountsZone = "counts.timezone"

// countKey is one record's place in the counts: its day in the zone, its
// UTC hour, and the dimensions the counts keep.
type countKey struct {
	day, hour                            int64
	source, platform, serial, actionType string
}

// SetCountsZone sets the zone whose days the daily counts use (the
// configured timezone). Call it before any write; EnsureCounts checks that
// the stored counts were built in it.
func (s *Store) SetCountsZone(loc *time.Location) { s.countsZone = loc }

func (s *Store) zone() *time.Location {
	if s.countsZone == nil {
		return time.UTC
	}
	return s.countsZone
}

// dayOf is the day number (since 1970-01-01) of t's date in the zone.
func (s *Store) dayOf(t time.Time) int64 {
	y, m, d := t.In(s.zone()).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// dayStart is the instant day begins in the zone.
func (s *Store) dayStart(day int64) time.Time { return dayStartIn(day, s.zone()) }

// dayStartIn is the instant day (days since 1970-01-01) begins in loc.
func dayStartIn(day int64, loc *time.Location) time.Time {
	y, m, d := time.Unix(day*86400, 0).UTC().Date()
	t := time.Date(y, m, d, 0, 0, 0, 0, loc)
	if _, _, d2 := t.Date(); d2 != d {
		// A zone whose clocks skip midnight (DST at 00:00, as in Havana or
		// Santiago): time.Date gave an instant of the day before; the day
		// begins when that offset ends.
		_, t = t.ZoneBounds()
	}
	return t
}

// hourOf is the UTC hour number (since 1970-01-01 00:00 UTC) t falls in.
// Hours need no zone: the hourly counts survive a change of timezone.
func hourOf(t time.Time) int64 {
	u := t.Unix()
	h := u / 3600
	if u%3600 < 0 {
		h-- // floor, not truncation, before 1970
	}
	return h
}

func hourStart(hour int64) time.Time { return time.Unix(hour*3600, 0) }

// countDeltas accumulates count changes in one transaction.
type countDeltas map[countKey]int64

func (c countDeltas) add(s *Store, a Activity, n int64) {
	c[countKey{s.dayOf(a.Timestamp), hourOf(a.Timestamp), a.Source, a.Platform, a.Serial, a.ActionType}] += n
}

// countTable is one of the aggregates: per day or per hour, with or without
// serial (the dimension with most values; counts that do not filter by it
// sum the few rows a unit of a table without it). Hours are kept without
// serial only: per project and hour, a row holds a record or two of a quiet
// project, and such a table grew by a quarter of the log's own size in the
// bench (BENCHMARKS.md); a project's partial edge days are an index range
// of its own rows instead.
type countTable struct {
	name, unit string // unit: "day" or "hour", the first key column
	serial     bool
}

var countTables = []countTable{
	{"activity_daily", "day", true}, {"activity_daily_total", "day", false}, {"activity_hourly", "hour", false},
}

// tableFor is the table whose rows sum a count of f by unit, if one does.
func tableFor(unit string, f Filter) (countTable, bool) {
	for _, t := range countTables {
		if t.unit == unit && t.serial == (f.Serial != "") {
			return t, true
		}
	}
	return countTable{}, false
}

// rowKey is a countKey rolled up to one row of t.
type rowKey struct {
	unit                                 int64
	source, platform, serial, actionType string
}

// rows rolls c up into t's rows, ordered so that every transaction locks
// count rows in the same order: concurrent runs touching the same units
// never deadlock.
func (c countDeltas) rows(t countTable) ([]rowKey, map[rowKey]int64) {
	sums := map[rowKey]int64{}
	for k, n := range c {
		r := rowKey{k.day, k.source, k.platform, k.serial, k.actionType}
		if t.unit == "hour" {
			r.unit = k.hour
		}
		if !t.serial {
			r.serial = ""
		}
		sums[r] += n
	}
	keys := make([]rowKey, 0, len(sums))
	for r, n := range sums {
		if n != 0 {
			keys = append(keys, r)
		}
	}
	slices.SortFunc(keys, func(a, b rowKey) int {
		return cmp.Or(cmp.Compare(a.unit, b.unit), cmp.Compare(a.source, b.source), cmp.Compare(a.platform, b.platform),
			cmp.Compare(a.serial, b.serial), cmp.Compare(a.actionType, b.actionType))
	})
	return keys, sums
}

// applyCounts writes deltas into every count table.
func (s *Store) applyCounts(ctx context.Context, tx *sqlx.Tx, deltas countDeltas) error {
	const chunk = 500 // rows per statement, far under the parameter limits
	var args []any
	for _, t := range countTables {
		cols := []string{t.unit, "source", "platform", "action_type", "n"}
		if t.serial {
			cols = slices.Insert(cols, 3, "serial")
		}
		keys, sums := deltas.rows(t)
		for start := 0; start < len(keys); start += chunk {
			part := keys[start:min(start+chunk, len(keys))]
			args = args[:0]
			for _, k := range part {
				args = append(args, k.unit, k.source, k.platform)
				if t.serial {
					args = append(args, k.serial)
				}
				args = append(args, k.actionType, sums[k])
			}
			if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO `+t.name+` (`+strings.Join(cols, ", ")+`) VALUES `+
				valueRows(len(part), len(cols))+` ON CONFLICT (`+strings.Join(cols[:len(cols)-1], ", ")+`) DO UPDATE SET n = `+t.name+`.n + excluded.n`), args...); err != nil {
				return fmt.Errorf("updating %s: %w", t.name, err)
			}
		}
	}
	return nil
}

// countRemoved takes records a delete, delete-all or purge removed out of
// the counts, in the same transaction.
func (s *Store) countRemoved(ctx context.Context, tx *sqlx.Tx, removed []Activity) error {
	counts := countDeltas{}
	for _, a := range removed {
		counts.add(s, a, -1)
	}
	return s.applyCounts(ctx, tx, counts)
}

// countsOfTable reads every row's count key and returns the table's counts,
// for a rebuild where the database cannot group by day in the zone itself.
func (s *Store) countsOfTable(ctx context.Context, tx *sqlx.Tx) (countDeltas, error) {
	rows, err := tx.QueryxContext(ctx, `SELECT timestamp, source, platform, serial, action_type FROM activity_log`)
	if err != nil {
		return nil, fmt.Errorf("reading rows for the daily counts: %w", err)
	}
	defer rows.Close()
	deltas := countDeltas{}
	for rows.Next() {
		var a Activity
		var ts dbTime
		if err := rows.Scan(&ts, &a.Source, &a.Platform, &a.Serial, &a.ActionType); err != nil {
			return nil, err
		}
		a.Timestamp = ts.Time
		deltas.add(s, a, 1)
	}
	return deltas, rows.Err()
}

// EnsureCounts rebuilds the daily counts when they were built in another
// zone or never (an upgrade): one pass over the table, in one transaction.
func (s *Store) EnsureCounts(ctx context.Context) (rebuilt bool, err error) {
	zone, err := s.Meta(ctx, metaCountsZone)
	if err != nil || zone == s.zone().String() {
		return false, err
	}
	return true, s.RebuildCounts(ctx)
}

// RebuildCounts recomputes the daily and hourly counts from activity_log.
func (s *Store) RebuildCounts(ctx context.Context) error {
	return s.inIdempotentTx(ctx, "rebuilding counts", func(tx *sqlx.Tx) error { return s.rebuildCounts(ctx, tx) })
}

// rebuildCounts is RebuildCounts inside tx (a restore's).
func (s *Store) rebuildCounts(ctx context.Context, tx *sqlx.Tx) error {
	for _, t := range countTables {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+t.name); err != nil {
			return fmt.Errorf("emptying %s: %w", t.name, err)
		}
	}
	if _, err := time.LoadLocation(s.zone().String()); err == nil && s.dialect == config.Postgres && s.zone().String() != "Local" {
		// dialect: PostgreSQL knows an IANA zone itself and groups in SQL.
		day := `((timestamp AT TIME ZONE $1)::date - DATE '1970-01-01')`
		hour := `floor(extract(epoch FROM timestamp) / 3600)`
		for _, q := range []struct {
			sql  string
			args []any
		}{
			{`INSERT INTO activity_daily (day, source, platform, serial, action_type, n)
				SELECT ` + day + `, source, platform, serial, action_type, COUNT(*) FROM activity_log GROUP BY 1, 2, 3, 4, 5`, []any{s.zone().String()}},
			{`INSERT INTO activity_daily_total (day, source, platform, action_type, n)
				SELECT day, source, platform, action_type, SUM(n) FROM activity_daily GROUP BY 1, 2, 3, 4`, nil},
			{`INSERT INTO activity_hourly (hour, source, platform, action_type, n)
				SELECT ` + hour + `, source, platform, action_type, COUNT(*) FROM activity_log GROUP BY 1, 2, 3, 4`, nil},
		} {
			if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
				return fmt.Errorf("rebuilding counts: %w", err)
			}
		}
	} else {
		deltas, err := s.countsOfTable(ctx, tx)
		if err != nil {
			return err
		}
		if err := s.applyCounts(ctx, tx, deltas); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO sync_meta (key, value, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`),
		metaCountsZone, s.zone().String(), s.timeArg(time.Now()))
	return err
}

// countable reports whether the counts can answer f: only filters
// they keep (and time bounds) are set. The console's filters (object, ip,
// q) and keyset positions are not kept.
func (f Filter) countable() bool {
	return f.Username == "" && f.After == nil && f.Before == nil && f.Object == "" && f.IP == "" && f.Query == ""
}

// countFast answers a count in one statement: whole days from the daily
// counts, whole UTC hours of the partial days at the edges from the hourly
// counts, and the partial hours left at the edges (with half-hour zones,
// up to two on each side) in activity_log itself — an index range of less
// than an hour each, so the cost does not grow with the table. A count by
// serial counts its partial edge days in the table (see countTable).
func (s *Store) countFast(ctx context.Context, f Filter) (int64, error) {
	var q countQuery
	first, last := int64(-1<<30), int64(1<<30) // whole days: [first, last); within INTEGER
	if !f.Since.IsZero() {
		first = s.dayOf(f.Since)
		if !s.dayStart(first).Equal(f.Since) {
			first++
		}
	}
	if !f.Until.IsZero() {
		last = s.dayOf(f.Until)
	}
	if first < last {
		q.sum("day", f, first, last)
		if !f.Since.IsZero() {
			s.countHours(&q, f, f.Since, s.dayStart(first))
		}
		if !f.Until.IsZero() {
			s.countHours(&q, f, s.dayStart(last), f.Until)
		}
	} else { // no whole day inside [since, until) (under two days), so both bounds are set
		s.countHours(&q, f, f.Since, f.Until)
	}
	if len(q.terms) == 0 { // since is not before until
		return 0, nil
	}
	var total int64
	if err := s.reads.GetContext(ctx, &total, s.rebind(`SELECT `+strings.Join(q.terms, " + ")), q.args...); err != nil {
		return 0, fmt.Errorf("counting activities: %w", err)
	}
	return total, nil
}

// countQuery is a sum of scalar subqueries, one round trip.
type countQuery struct {
	terms []string
	args  []any
}

// sum adds the rows of the count table by unit for [first, last).
func (q *countQuery) sum(unit string, f Filter, first, last int64) {
	table, where, args := countRows(unit, f, first, last)
	q.terms = append(q.terms, `(SELECT COALESCE(SUM(n), 0) FROM `+table+where+`)`)
	q.args = append(q.args, args...)
}

// countRows selects the rows of the count table by unit (day or hour) for
// [first, last) matching f.
func countRows(unit string, f Filter, first, last int64) (table, where string, args []any) {
	conds, args := []string{unit + " >= ?", unit + " < ?"}, []any{first, last}
	eq := func(col, v string) {
		if v != "" {
			conds, args = append(conds, col+" = ?"), append(args, v)
		}
	}
	eq("serial", f.Serial)
	eq("platform", f.Platform)
	eq("action_type", f.ActionType)
	eq("source", f.Source)
	t, _ := tableFor(unit, f)
	return t.name, " WHERE " + strings.Join(conds, " AND "), args
}

// countHours adds [from, to): its whole UTC hours from the hourly counts,
// the rest in activity_log.
func (s *Store) countHours(q *countQuery, f Filter, from, to time.Time) {
	first, last := hourOf(from), hourOf(to) // whole hours: [first, last)
	if !hourStart(first).Equal(from) {
		first++
	}
	if _, ok := tableFor("hour", f); !ok || first >= last {
		s.countRowsIn(q, f, from, to)
		return
	}
	q.sum("hour", f, first, last)
	s.countRowsIn(q, f, from, hourStart(first))
	s.countRowsIn(q, f, hourStart(last), to)
}

// countRowsIn adds the rows of [from, to) matching f, counted in the table.
func (s *Store) countRowsIn(q *countQuery, f Filter, from, to time.Time) {
	if !from.Before(to) {
		return
	}
	f.Since, f.Until = from, to
	where, args := s.where(f)
	q.terms = append(q.terms, `(SELECT COUNT(*) FROM activity_log`+where+`)`)
	q.args = append(q.args, args...)
}

// CountByScan counts with COUNT(*) over activity_log, whatever the filter:
// the baseline that tests and benchmarks hold the daily counts to.
func (s *Store) CountByScan(ctx context.Context, f Filter) (int64, error) { return s.countRows(ctx, f) }

// countRows counts in activity_log itself.
func (s *Store) countRows(ctx context.Context, f Filter) (int64, error) {
	where, args := s.where(f)
	var n int64
	if err := s.reads.GetContext(ctx, &n, s.rebind(`SELECT COUNT(*) FROM activity_log`+where), args...); err != nil {
		return 0, fmt.Errorf("counting activities: %w", err)
	}
	return n, nil
}
