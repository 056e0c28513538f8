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
// action_type), how many records there are, maintained in the same
// transaction as every write. A count sums the whole days and counts the
// partial days at the edges of since/until in activity_log itself — an
// index range of at most a day on each side.

// metaCountsZone keeps the zone the daily counts were built in; another zone
// needs a rebuild.
const metaCountsZone = "counts.timezone"

// countKey is one row of the daily counts.
type countKey struct {
	day                                  int64
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
func (s *Store) dayStart(day int64) time.Time {
	y, m, d := time.Unix(day*86400, 0).UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, s.zone())
}

// countDeltas accumulates count changes in one transaction.
type countDeltas map[countKey]int64

func (c countDeltas) add(s *Store, a Activity, n int64) {
	c[countKey{s.dayOf(a.Timestamp), a.Source, a.Platform, a.Serial, a.ActionType}] += n
}

// sortedKeys orders keys so that every transaction locks count rows in the
// same order: concurrent runs touching the same days never deadlock.
func (c countDeltas) sortedKeys() []countKey {
	keys := make([]countKey, 0, len(c))
	for k, n := range c {
		if n != 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b countKey) int {
		return cmp.Or(cmp.Compare(a.day, b.day), cmp.Compare(a.source, b.source), cmp.Compare(a.platform, b.platform),
			cmp.Compare(a.serial, b.serial), cmp.Compare(a.actionType, b.actionType))
	})
	return keys
}

// applyCounts writes deltas into both daily tables.
func (s *Store) applyCounts(ctx context.Context, tx *sqlx.Tx, deltas countDeltas) error {
	totals := countDeltas{}
	var args []any
	for _, k := range deltas.sortedKeys() {
		n := deltas[k]
		args = append(args, k.day, k.source, k.platform, k.serial, k.actionType, n)
		totals[countKey{day: k.day, source: k.source, platform: k.platform, actionType: k.actionType}] += n
	}
	const chunk = 500 // rows per statement, far under the parameter limits
	for start := 0; start < len(args); start += chunk * 6 {
		part := args[start:min(start+chunk*6, len(args))]
		if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO activity_daily (day, source, platform, serial, action_type, n) VALUES `+
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?),", len(part)/6), ",")+
			` ON CONFLICT (day, source, platform, serial, action_type) DO UPDATE SET n = activity_daily.n + excluded.n`), part...); err != nil {
			return fmt.Errorf("updating daily counts: %w", err)
		}
	}
	args = args[:0]
	for _, k := range totals.sortedKeys() {
		args = append(args, k.day, k.source, k.platform, k.actionType, totals[k])
	}
	for start := 0; start < len(args); start += chunk * 5 {
		part := args[start:min(start+chunk*5, len(args))]
		if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO activity_daily_total (day, source, platform, action_type, n) VALUES `+
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?),", len(part)/5), ",")+
			` ON CONFLICT (day, source, platform, action_type) DO UPDATE SET n = activity_daily_total.n + excluded.n`), part...); err != nil {
			return fmt.Errorf("updating daily totals: %w", err)
		}
	}
	return nil
}

// countRemoved takes records a delete, delete-all or purge removed out of
// the daily counts, in the same transaction.
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

// RebuildCounts recomputes the daily counts from activity_log.
func (s *Store) RebuildCounts(ctx context.Context) error {
	return s.inTx(ctx, "rebuilding daily counts", func(tx *sqlx.Tx) error {
		for _, q := range []string{`DELETE FROM activity_daily`, `DELETE FROM activity_daily_total`} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		if _, err := time.LoadLocation(s.zone().String()); err == nil && s.dialect == config.Postgres && s.zone().String() != "Local" {
			// dialect: PostgreSQL knows an IANA zone itself and groups in SQL.
			day := `((timestamp AT TIME ZONE $1)::date - DATE '1970-01-01')`
			if _, err := tx.ExecContext(ctx, `INSERT INTO activity_daily (day, source, platform, serial, action_type, n)
				SELECT `+day+`, source, platform, serial, action_type, COUNT(*) FROM activity_log GROUP BY 1, 2, 3, 4, 5`, s.zone().String()); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO activity_daily_total (day, source, platform, action_type, n)
				SELECT day, source, platform, action_type, SUM(n) FROM activity_daily GROUP BY day, source, platform, action_type`); err != nil {
				return err
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
	})
}

// countable reports whether the daily counts can answer f: only filters
// they keep (and time bounds) are set. The console's filters (object, ip,
// q) and keyset positions are not kept.
func (f Filter) countable() bool {
	return f.Username == "" && f.After == nil && f.Before == nil && f.Object == "" && f.IP == "" && f.Query == ""
}

// countFast answers a count from whole days of the daily counts plus exact
// counts of the partial days at the edges.
func (s *Store) countFast(ctx context.Context, f Filter) (int64, error) {
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
	if first >= last { // less than a whole day: the index range is small anyway
		return s.countRows(ctx, f)
	}
	table, where, args := dailyRows(f, first, last)
	var total int64
	if err := s.reads.GetContext(ctx, &total, s.rebind(`SELECT COALESCE(SUM(n), 0) FROM `+table+where), args...); err != nil {
		return 0, fmt.Errorf("counting activities by day: %w", err)
	}
	edge := func(from, to time.Time) error {
		if !from.Before(to) {
			return nil
		}
		part := f
		part.Since, part.Until = from, to
		n, err := s.countRows(ctx, part)
		total += n
		return err
	}
	if !f.Since.IsZero() {
		if err := edge(f.Since, s.dayStart(first)); err != nil {
			return 0, err
		}
	}
	if !f.Until.IsZero() {
		if err := edge(s.dayStart(last), f.Until); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// dailyRows selects the daily-count rows of whole days [first, last)
// matching f: the table without serial unless f filters by it.
func dailyRows(f Filter, first, last int64) (table, where string, args []any) {
	table, conds, args := "activity_daily_total", []string{"day >= ?", "day < ?"}, []any{first, last}
	eq := func(col, v string) {
		if v != "" {
			conds, args = append(conds, col+" = ?"), append(args, v)
		}
	}
	if f.Serial != "" {
		table = "activity_daily"
		eq("serial", f.Serial)
	}
	eq("platform", f.Platform)
	eq("action_type", f.ActionType)
	eq("source", f.Source)
	return table, " WHERE " + strings.Join(conds, " AND "), args
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
