package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/report"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// The completeness report's bench (issue 23): a year of 100 project
// targets over 10M records, on PostgreSQL and SQLite.
const (
	reportTargets = 100
	reportFirst   = 10080000 // the first project id
)

// reportBench makes the report (build, sign, render the HTML page) for a
// year of 100 targets and compares it with a baseline in the same run: the
// same month figures counted from the table itself (COUNT(*) per target and
// month), which is what the report would cost without the daily counts.
func (b *bench) reportBench(ctx context.Context) error {
	fmt.Fprintln(b.out, "### Completeness report: a year of 100 targets")
	fmt.Fprintln(b.out)
	fmt.Fprintln(b.out, "Report = `report.Make` as `tapd-mirror report --out FILE.html` runs it: build (sync state, TAPD's month totals, every target's 12 month counts from the daily counts, what only the mirror holds, checkpoints, last verification), sign, render the HTML page. JSON = the same with the JSON document. Scan = the report's 1 200 month counts from the table (`COUNT(*)` per target and month on the serial index), same run, same store. p50 over 5 runs after a warm-up. The data is generated in SQL: records spread evenly over 2025 (Asia/Shanghai), 100 serials, one target each; the daily and hourly counts rebuilt by the store (`RebuildCounts`, what the sync keeps incrementally); per target its checkpoint, coverage with two month-end gaps (one acknowledged) and its TAPD month totals. Every index the sync's migrations create is built, except the free-text one (PostgreSQL's trigram GIN, SQLite's FTS5), which only the console's search reads. Target: ≤ 10 s.")
	fmt.Fprintln(b.out)
	var rows [][]string
	for _, dialect := range []string{config.Postgres, config.SQLite} {
		r, err := b.reportAt(ctx, dialect, b.n(10_000_000))
		if err != nil {
			return fmt.Errorf("%s: %w", dialect, err)
		}
		rows = append(rows, r...)
	}
	b.table([]string{"database", "records", "generated in", "what", "p50", "p99", "vs scan", "target", "result"}, rows)
	return nil
}

func (b *bench) reportAt(ctx context.Context, dialect string, n int) ([][]string, error) {
	start := time.Now()
	st, _, closeStore, err := b.freshStore(ctx, dialect, "report")
	if err != nil {
		return nil, err
	}
	defer closeStore()
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	year := time.Date(2025, 1, 1, 0, 0, 0, 0, shanghai)
	if err := generateReportData(ctx, st, shanghai, year, n); err != nil {
		return nil, err
	}
	gen := time.Since(start).Round(time.Second)
	skey, err := integrity.GenerateKey("bench.example")
	if err != nil {
		return nil, err
	}
	key, err := integrity.ParseKey(skey)
	if err != nil {
		return nil, err
	}
	if _, _, err := st.SignCheckpoint(ctx, key, year.AddDate(1, 0, 1)); err != nil {
		return nil, err
	}
	o := report.Options{Store: st, Key: key, Location: shanghai, From: year, To: year.AddDate(1, 0, -1),
		Horizon: year.AddDate(1, 0, -182), Now: year.AddDate(1, 0, 1), By: "bench"}
	var made report.Made
	html, err := measure(5, func() error { made, err = report.Make(ctx, o, "en", false, nil); return err })
	if err != nil {
		return nil, err
	}
	if got := made.Report.Totals.MirrorCount; got != int64(n) || made.Report.Totals.TAPDVerified != int64(n) || len(made.Report.Targets) != reportTargets {
		return nil, fmt.Errorf("the report counts %d records (TAPD %d) in %d targets, generated %d in %d",
			got, made.Report.Totals.TAPDVerified, len(made.Report.Targets), n, reportTargets)
	}
	size := len(made.Body)
	jsonDoc, err := measure(5, func() error { made, err = report.Make(ctx, o, "en", true, nil); return err })
	if err != nil {
		return nil, err
	}
	scan, err := measure(2, func() error {
		var total int64
		for k := range reportTargets {
			for m := range 12 {
				c, err := st.CountByScan(ctx, storage.Filter{Source: storage.SourceTAPD, Serial: strconv.Itoa(reportFirst + k),
					Since: year.AddDate(0, m, 0), Until: year.AddDate(0, m+1, 0)})
				if err != nil {
					return err
				}
				total += c
			}
		}
		if total != int64(n) {
			return fmt.Errorf("the scan counts %d of %d records", total, n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	name := map[string]string{config.Postgres: "PostgreSQL", config.SQLite: "SQLite"}[dialect]
	row := func(what string, l latencies) []string {
		return []string{name, strconv.Itoa(n), gen.String(), what, ms(l.p50), ms(l.p99), ratio(float64(l.p50), float64(scan.p50)),
			"≤ 10 s", passFail(l.p50 <= 10*time.Second)}
	}
	return [][]string{
		row(fmt.Sprintf("report, HTML page (%d KiB)", size>>10), html),
		row(fmt.Sprintf("report, JSON document (%d KiB)", len(made.Body)>>10), jsonDoc),
		{name, strconv.Itoa(n), gen.String(), "scan baseline: 1 200 month counts by COUNT(*)", ms(scan.p50), ms(scan.p99), "1.00", "(baseline)", "—"},
	}, nil
}

// generateReportData loads n records spread over the year after start, as
// the sync leaves them for 100 project targets, with the sync state and
// TAPD's month totals.
func generateReportData(ctx context.Context, st *storage.Store, loc *time.Location, start time.Time, n int) error {
	db := st.DB()
	pg := st.Dialect() == config.Postgres
	// Bulk load without the secondary indexes, then build them, as a DBA would.
	var defs []struct {
		Name string `db:"name"`
		Def  string `db:"def"`
	}
	q := `SELECT indexname AS name, indexdef AS def FROM pg_indexes WHERE tablename = 'activity_log'
		AND indexname NOT IN ('activity_log_pkey', 'activity_log_detail_trgm_idx')`
	if !pg {
		q = `SELECT name, sql AS def FROM sqlite_master WHERE type = 'index' AND tbl_name = 'activity_log' AND sql IS NOT NULL`
	}
	if err := db.SelectContext(ctx, &defs, q); err != nil {
		return err
	}
	drop := []string{`DROP INDEX IF EXISTS activity_log_detail_trgm_idx`}
	for _, d := range defs {
		drop = append(drop, `DROP INDEX `+d.Name)
	}
	if !pg {
		drop = append(drop, `DROP TRIGGER activity_fts_insert`, `DROP TRIGGER activity_fts_delete`, `DROP TRIGGER activity_fts_update`)
	}
	for _, s := range drop {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	step := float64(365*24*3600) / float64(n) // seconds between records
	actions := `CASE (i * 13) % 4 WHEN 0 THEN 'add' WHEN 1 THEN 'delete' WHEN 2 THEN 'upload' ELSE 'download' END`
	serial := fmt.Sprintf(`CAST(%d + i %% %d AS TEXT)`, reportFirst, reportTargets)
	cols := `INSERT INTO activity_log (platform, serial, action_type, action_detail, username, timestamp, source, source_id, workspace_id, extra, ingested_at)`
	var insert string
	var args []any
	if pg {
		insert = cols + ` SELECT 'tapd', ` + serial + `, ` + actions + `, 'story: record ' || i, 'user' || (i * 31 % 1000),
			$1::timestamptz + (i * $2::double precision) * interval '1 second', 'tapd', i::text, ` + serial + `, '{"ip":"10.0.0.1"}', now()
			FROM generate_series(0, $3 - 1) AS i`
		args = []any{start, step, n}
	} else {
		insert = `WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < ?) ` + cols + `
			SELECT 'tapd', ` + serial + `, ` + actions + `, 'story: record ' || i, 'user' || (i * 31 % 1000),
			? + CAST(i * ? AS INTEGER), 'tapd', CAST(i AS TEXT), ` + serial + `, '{"ip":"10.0.0.1"}', ? FROM g`
		args = []any{n, start.Unix(), step, time.Now().Unix()}
	}
	if _, err := db.ExecContext(ctx, insert, args...); err != nil {
		return fmt.Errorf("generating records: %w", err)
	}
	for _, d := range defs {
		if _, err := db.ExecContext(ctx, d.Def); err != nil {
			return fmt.Errorf("%s: %w", d.Def, err)
		}
	}
	if pg {
		if _, err := db.ExecContext(ctx, `VACUUM ANALYZE activity_log`); err != nil {
			return err
		}
	}
	st.SetCountsZone(loc)
	if err := st.RebuildCounts(ctx); err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, map[bool]string{true: `VACUUM ANALYZE`, false: `ANALYZE`}[pg]); err != nil {
		return err
	}
	return generateSyncState(ctx, st, start)
}

// generateSyncState writes each target's checkpoint, coverage (two
// month-end minutes missing, the first acknowledged) and TAPD's month
// totals (the records of the month: every window reconciled).
func generateSyncState(ctx context.Context, st *storage.Store, start time.Time) error {
	db := st.DB()
	ts := func(t time.Time) any {
		if st.Dialect() == config.SQLite {
			return t.Unix()
		}
		return t
	}
	end := start.AddDate(1, 0, 0)
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit a no-op
	exec := func(q string, args ...any) error {
		_, err := tx.ExecContext(ctx, db.Rebind(q), args...)
		return err
	}
	totals := map[string]map[int]int64{}
	for m := range 12 {
		var rows []struct {
			W string `db:"workspace_id"`
			N int64  `db:"n"`
		}
		if err := tx.SelectContext(ctx, &rows, db.Rebind(`SELECT workspace_id, COUNT(*) AS n FROM activity_log
			WHERE timestamp >= ? AND timestamp < ? GROUP BY workspace_id`), ts(start.AddDate(0, m, 0)), ts(start.AddDate(0, m+1, 0))); err != nil {
			return err
		}
		for _, r := range rows {
			if totals[r.W] == nil {
				totals[r.W] = map[int]int64{}
			}
			totals[r.W][m] = r.N
		}
	}
	now := end.AddDate(0, 0, 1)
	for k := range reportTargets {
		w := strconv.Itoa(reportFirst + k)
		gap1, gap2 := start.AddDate(0, 3, 0).Add(-time.Minute), start.AddDate(0, 8, 0).Add(-time.Minute)
		if err := exec(`INSERT INTO sync_checkpoint (workspace, origin, high_water, updated_at, fresh_at, settled_at, settle_remote, settle_stored)
			VALUES (?, ?, ?, ?, ?, ?, 0, 0)`, w, ts(start), ts(end), ts(now), ts(now), ts(now)); err != nil {
			return err
		}
		for _, c := range [][2]time.Time{{start, gap1}, {gap1.Add(time.Minute), gap2}, {gap2.Add(time.Minute), end}} {
			if err := exec(`INSERT INTO sync_coverage (workspace, start_at, end_at) VALUES (?, ?, ?)`, w, ts(c[0]), ts(c[1])); err != nil {
				return err
			}
		}
		for _, g := range []time.Time{gap1, gap2} {
			if err := exec(`INSERT INTO sync_gap_reason (workspace, start_at, end_at, reason, retry) VALUES (?, ?, ?, ?, ?)`,
				w, ts(g), ts(g.Add(time.Minute)), storage.ReasonUnreachableMinute, false); err != nil {
				return err
			}
		}
		if err := exec(`INSERT INTO sync_gap_ack (workspace, start_at, end_at, acknowledged_at, note, acknowledged_by) VALUES (?, ?, ?, ?, ?, ?)`,
			w, ts(gap1), ts(gap1.Add(time.Minute)), ts(now), "month-end minute", "ops"); err != nil {
			return err
		}
		for m := range 12 {
			ms, me := start.AddDate(0, m, 0), start.AddDate(0, m+1, 0)
			if err := exec(`INSERT INTO sync_month_total (workspace, month_start, verified_start, verified_end, verified_total, verified_at)
				VALUES (?, ?, ?, ?, ?, ?)`, w, ts(ms), ts(ms), ts(me), totals[w][m], ts(me)); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}
