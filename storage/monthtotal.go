package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// TAPD's own totals per target and calendar month, kept for the
// completeness report (package report): what TAPD said when the month's
// windows were verified, and at the last settle check.

// WindowTotal is TAPD's total for a verified window: Span is the TAPD time
// the total counts (the window up to the minute its end_time reached),
// Month the start of the calendar month (TAPD's zone) it lies in.
type WindowTotal struct {
	Month time.Time
	Span  Interval
	Total int64
	// Prior, for a window fetched again (a settle check found late
	// records), is how many records the target had reported in Span
	// before: the month's total grows by what TAPD added.
	Prior *int64
}

// SettleMonth is one month of a settle check: TAPD's total for Span then,
// and the records the target had reported in it.
type SettleMonth struct {
	Month    time.Time
	Span     Interval
	Remote   int64
	Reported int64
}

// MonthTotal is what the mirror keeps of TAPD's totals for one target and month.
type MonthTotal struct {
	Workspace      string
	Month          time.Time
	Verified       Interval // zero: no verified window recorded
	VerifiedTotal  int64
	VerifiedAt     time.Time
	Settle         Interval // zero: no settle check recorded
	SettleTotal    int64
	SettleReported int64
	SettledAt      time.Time
}

// recordWindowTotal adds a verified window's total to its month, in the
// window's commit transaction. Windows of one month overlap (the
// look-back before the checkpoint, an inclusive end minute): a window that
// overlaps or touches the month's verified span extends it, and the minutes
// counted twice are taken off at the count of records the target reported
// in them, which the window has just stored. A window apart from the span
// (a hole between) replaces it only if longer: the span stays one interval
// whose total TAPD gave. A window fetched again inside the span adds what
// TAPD added since (Prior); without Prior it changes nothing: each minute
// keeps the count of the verification that first covered it.
func (s *Store) recordWindowTotal(ctx context.Context, tx *sqlx.Tx, workspace string, w WindowTotal) error {
	var rows []struct {
		Start dbTime `db:"verified_start"`
		End   dbTime `db:"verified_end"`
		Total int64  `db:"verified_total"`
		At    dbTime `db:"verified_at"`
	}
	if err := tx.SelectContext(ctx, &rows, s.rebind(`SELECT verified_start, verified_end, verified_total, verified_at FROM sync_month_total
		WHERE workspace = ? AND month_start = ?`), workspace, s.timeArg(w.Month)); err != nil {
		return fmt.Errorf("reading the month's TAPD total: %w", err)
	}
	span, total := w.Span, w.Total
	if len(rows) == 1 && !rows[0].Start.IsZero() {
		old := Interval{Start: rows[0].Start.Time, End: rows[0].End.Time}
		switch {
		case w.Prior != nil && !span.Start.Before(old.Start) && !span.End.After(old.End): // fetched again
			total, span = rows[0].Total+w.Total-*w.Prior, old
		case !span.Start.After(old.End) && !old.Start.After(span.End): // overlap or touch
			lo, hi := maxTime(span.Start, old.Start), minTime(span.End, old.End)
			var twice int64
			if lo.Before(hi) {
				// The earlier total counted the overlap as it was when that
				// window was verified; records that reached TAPD in it since
				// (the look-back's very reason) are in this window's total
				// only, so they are not taken off.
				n, err := s.countReportedBy(ctx, tx, workspace, lo, hi, rows[0].At.Time)
				if err != nil {
					return err
				}
				twice = int64(n)
			}
			total = rows[0].Total + w.Total - twice
			span = Interval{Start: minTime(span.Start, old.Start), End: maxTime(span.End, old.End)}
		case span.End.Sub(span.Start) < old.End.Sub(old.Start):
			return nil
		}
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO sync_month_total (workspace, month_start, verified_start, verified_end, verified_total, verified_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (workspace, month_start) DO UPDATE SET verified_start = excluded.verified_start,
			verified_end = excluded.verified_end, verified_total = excluded.verified_total, verified_at = excluded.verified_at`),
		workspace, s.timeArg(w.Month), s.timeArg(span.Start), s.timeArg(span.End), total, s.timeArg(time.Now())); err != nil {
		return fmt.Errorf("recording the month's TAPD total: %w", err)
	}
	return nil
}

// RecordSettleMonths saves a settle check's months, made at the engine's clock time at.
func (s *Store) RecordSettleMonths(ctx context.Context, workspace string, at time.Time, months []SettleMonth) error {
	if len(months) == 0 {
		return nil
	}
	return s.inIdempotentTx(ctx, "recording settle checks of "+workspace, func(tx *sqlx.Tx) error {
		for _, m := range months {
			if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO sync_month_total (workspace, month_start, settle_start, settle_end, settle_total, settle_reported, settled_at)
				VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (workspace, month_start) DO UPDATE SET settle_start = excluded.settle_start, settle_end = excluded.settle_end,
					settle_total = excluded.settle_total, settle_reported = excluded.settle_reported, settled_at = excluded.settled_at`),
				workspace, s.timeArg(m.Month), s.timeArg(m.Span.Start), s.timeArg(m.Span.End), m.Remote, m.Reported, s.timeArg(at)); err != nil {
				return fmt.Errorf("recording a settle check: %w", err)
			}
		}
		return nil
	})
}

// MonthTotals returns the TAPD totals kept for months starting in [from, to), per workspace, oldest first.
func (s *Store) MonthTotals(ctx context.Context, from, to time.Time) (map[string][]MonthTotal, error) {
	var rows []struct {
		Workspace string `db:"workspace"`
		Month     dbTime `db:"month_start"`
		VStart    dbTime `db:"verified_start"`
		VEnd      dbTime `db:"verified_end"`
		VTotal    int64  `db:"verified_total"`
		VAt       dbTime `db:"verified_at"`
		SStart    dbTime `db:"settle_start"`
		SEnd      dbTime `db:"settle_end"`
		STotal    int64  `db:"settle_total"`
		SReported int64  `db:"settle_reported"`
		SAt       dbTime `db:"settled_at"`
	}
	if err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT workspace, month_start, verified_start, verified_end, verified_total, verified_at,
		settle_start, settle_end, settle_total, settle_reported, settled_at FROM sync_month_total
		WHERE month_start >= ? AND month_start < ? ORDER BY workspace, month_start`), s.timeArg(from), s.timeArg(to)); err != nil {
		return nil, fmt.Errorf("reading TAPD's month totals: %w", err)
	}
	out := map[string][]MonthTotal{}
	for _, r := range rows {
		out[r.Workspace] = append(out[r.Workspace], MonthTotal{Workspace: r.Workspace, Month: r.Month.Time,
			Verified: Interval{Start: r.VStart.Time, End: r.VEnd.Time}, VerifiedTotal: r.VTotal, VerifiedAt: r.VAt.Time,
			Settle: Interval{Start: r.SStart.Time, End: r.SEnd.Time}, SettleTotal: r.STotal, SettleReported: r.SReported, SettledAt: r.SAt.Time})
	}
	return out, nil
}

// GapAck is an acknowledged gap: who acknowledged it (the API token's
// name; "" when unknown), when, and their note.
type GapAck struct {
	Interval
	By   string
	At   time.Time
	Note string
}

// GapAcks returns every workspace's acknowledged gaps, oldest first.
func (s *Store) GapAcks(ctx context.Context) (map[string][]GapAck, error) {
	var rows []struct {
		Workspace string `db:"workspace"`
		Start     dbTime `db:"start_at"`
		End       dbTime `db:"end_at"`
		At        dbTime `db:"acknowledged_at"`
		By        string `db:"acknowledged_by"`
		Note      string `db:"note"`
	}
	if err := s.db.SelectContext(ctx, &rows, `SELECT workspace, start_at, end_at, acknowledged_at, acknowledged_by, note
		FROM sync_gap_ack ORDER BY workspace, start_at`); err != nil {
		return nil, fmt.Errorf("reading acknowledged gaps: %w", err)
	}
	out := map[string][]GapAck{}
	for _, r := range rows {
		out[r.Workspace] = append(out[r.Workspace], GapAck{Interval: Interval{Start: r.Start.Time, End: r.End.Time},
			By: r.By, At: r.At.Time, Note: r.Note})
	}
	return out, nil
}

// CheckpointsSigned returns the checkpoints signed in [from, to] (at most
// limit, the first ones), how many there are in all, and the first signed
// after to, which covers everything up to it (ErrNotFound-free: zero Size
// when there is none).
func (s *Store) CheckpointsSigned(ctx context.Context, from, to time.Time, limit int) (in []SignedCheckpoint, count int64, after SignedCheckpoint, err error) {
	var rows []checkpointRow
	if err = s.db.SelectContext(ctx, &rows, s.rebind(`SELECT `+checkpointColumns+` FROM integrity_checkpoint
		WHERE signed_at >= ? AND signed_at <= ? ORDER BY tree_size LIMIT ?`), s.timeArg(from), s.timeArg(to), limit); err != nil {
		return nil, 0, after, fmt.Errorf("listing checkpoints signed in the period: %w", err)
	}
	for _, r := range rows {
		in = append(in, r.checkpoint())
	}
	if err = s.db.GetContext(ctx, &count, s.rebind(`SELECT COUNT(*) FROM integrity_checkpoint WHERE signed_at >= ? AND signed_at <= ?`),
		s.timeArg(from), s.timeArg(to)); err != nil {
		return nil, 0, after, fmt.Errorf("counting checkpoints signed in the period: %w", err)
	}
	var next []checkpointRow
	if err = s.db.SelectContext(ctx, &next, s.rebind(`SELECT `+checkpointColumns+` FROM integrity_checkpoint
		WHERE signed_at > ? ORDER BY tree_size LIMIT 1`), s.timeArg(to)); err != nil {
		return nil, 0, after, fmt.Errorf("finding the checkpoint after the period: %w", err)
	}
	if len(next) == 1 {
		after = next[0].checkpoint()
	}
	return in, count, after, nil
}

// countReportedBy counts the records target had reported in [since, until)
// that the mirror had stored by then (ingested_at; a membership counts by
// its record's).
func (s *Store) countReportedBy(ctx context.Context, q sqlx.QueryerContext, target string, since, until, by time.Time) (int, error) {
	var n int
	err := sqlx.GetContext(ctx, q, &n, s.rebind(`SELECT (SELECT COUNT(*) FROM activity_target t JOIN activity_log a ON a.source = 'tapd' AND a.source_id = t.source_id
			WHERE t.target = ? AND t.timestamp >= ? AND t.timestamp < ? AND a.ingested_at <= ?)
		+ (SELECT COUNT(*) FROM activity_log WHERE workspace_id = ? AND source = 'tapd' AND timestamp >= ? AND timestamp < ? AND ingested_at <= ?)`),
		target, s.timeArg(since), s.timeArg(until), s.timeArg(by), target, s.timeArg(since), s.timeArg(until), s.timeArg(by))
	if err != nil {
		return 0, fmt.Errorf("counting records reported by %s: %w", target, err)
	}
	return n, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
