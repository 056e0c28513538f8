package storage

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"
)

// Interval is a half-open span of TAPD time [Start, End).
type Interval struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// SyncState is what the mirror knows it holds of one workspace.
type SyncState struct {
	Origin       time.Time  // start of the first committed window; zero before any
	HighWater    time.Time  // checkpoint: every window before it was committed
	Coverage     []Interval // verified-complete intervals, oldest first, disjoint
	Acknowledged []Interval // gaps an operator acknowledged
}

// Gap is a span the mirror never verified, and whether an operator
// acknowledged it (then it is reported, but no longer warned about).
type Gap struct {
	Interval
	Acknowledged bool `json:"acknowledged"`
}

// Synced reports whether any window was ever committed.
func (st SyncState) Synced() bool { return !st.HighWater.IsZero() }

// Gaps are the spans after Origin and before HighWater that were never
// verified complete: a window that did not reconcile, or TAPD time that fell
// out of the half year while the worker was away.
func (st SyncState) Gaps() []Gap {
	gaps := []Gap{}
	for _, h := range Holes(st.Origin, st.HighWater, st.Coverage) {
		acked := slices.ContainsFunc(st.Acknowledged, func(a Interval) bool {
			return a.Start.Equal(h.Start) && a.End.Equal(h.End)
		})
		gaps = append(gaps, Gap{Interval: h, Acknowledged: acked})
	}
	return gaps
}

// Holes returns the parts of [from, to) that coverage (sorted, disjoint) misses.
func Holes(from, to time.Time, coverage []Interval) []Interval {
	out := []Interval{}
	cursor := from
	for _, c := range coverage {
		if !c.Start.Before(to) {
			break
		}
		if c.Start.After(cursor) {
			out = append(out, Interval{Start: cursor, End: c.Start})
		}
		if c.End.After(cursor) {
			cursor = c.End
		}
	}
	if cursor.Before(to) {
		out = append(out, Interval{Start: cursor, End: to})
	}
	return out
}

// SyncState reads a workspace's checkpoint and coverage.
func (s *Store) SyncState(ctx context.Context, workspace string) (SyncState, error) {
	var row struct {
		Origin    dbTime `db:"origin"`
		HighWater dbTime `db:"high_water"`
	}
	err := s.db.GetContext(ctx, &row, s.rebind(`SELECT origin, high_water FROM sync_checkpoint WHERE workspace = ?`), workspace)
	if err != nil && !isNoRows(err) {
		return SyncState{}, fmt.Errorf("reading checkpoint of %s: %w", workspace, err)
	}
	cov, err := s.intervals(ctx, `SELECT start_at, end_at FROM sync_coverage WHERE workspace = ? ORDER BY start_at`, workspace)
	if err != nil {
		return SyncState{}, fmt.Errorf("reading coverage of %s: %w", workspace, err)
	}
	acked, err := s.intervals(ctx, `SELECT start_at, end_at FROM sync_gap_ack WHERE workspace = ? ORDER BY start_at`, workspace)
	if err != nil {
		return SyncState{}, fmt.Errorf("reading acknowledged gaps of %s: %w", workspace, err)
	}
	return SyncState{Origin: row.Origin.Time, HighWater: row.HighWater.Time, Coverage: cov, Acknowledged: acked}, nil
}

// AcknowledgeGaps records every current gap of a workspace as acknowledged
// and returns them: they stay in status but are no longer warned about.
func (s *Store) AcknowledgeGaps(ctx context.Context, workspace, note string) ([]Interval, error) {
	state, err := s.SyncState(ctx, workspace)
	if err != nil {
		return nil, err
	}
	acked := []Interval{}
	err = s.inTx(ctx, "acknowledging gaps of "+workspace, func(tx *sqlx.Tx) error {
		for _, g := range state.Gaps() {
			if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO sync_gap_ack (workspace, start_at, end_at, acknowledged_at, note)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace, start_at, end_at) DO NOTHING`),
				workspace, s.timeArg(g.Start), s.timeArg(g.End), s.timeArg(time.Now()), note); err != nil {
				return err
			}
			acked = append(acked, g.Interval)
		}
		return nil
	})
	return acked, err
}

// CommitWindow records, after the window's records were committed, that
// [from, to) was fetched: the checkpoint moves up to `to` (never back), and
// when verified the interval joins the workspace's coverage, merged with its
// neighbours. One transaction.
func (s *Store) CommitWindow(ctx context.Context, workspace string, w Interval, verified bool) error {
	return s.inTx(ctx, "committing window of "+workspace, func(tx *sqlx.Tx) error {
		if verified {
			if err := s.mergeCoverage(ctx, tx, workspace, w); err != nil {
				return err
			}
		}
		now := s.timeArg(time.Now())
		_, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO sync_checkpoint (workspace, origin, high_water, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (workspace) DO UPDATE SET
				origin = CASE WHEN excluded.origin < sync_checkpoint.origin THEN excluded.origin ELSE sync_checkpoint.origin END,
				high_water = CASE WHEN excluded.high_water > sync_checkpoint.high_water THEN excluded.high_water ELSE sync_checkpoint.high_water END,
				updated_at = excluded.updated_at`), workspace, s.timeArg(w.Start), s.timeArg(w.End), now)
		return err
	})
}

func (s *Store) mergeCoverage(ctx context.Context, tx *sqlx.Tx, workspace string, w Interval) error {
	var touching []struct {
		Start dbTime `db:"start_at"`
		End   dbTime `db:"end_at"`
	}
	if err := tx.SelectContext(ctx, &touching, s.rebind(`SELECT start_at, end_at FROM sync_coverage
		WHERE workspace = ? AND start_at <= ? AND end_at >= ?`), workspace, s.timeArg(w.End), s.timeArg(w.Start)); err != nil {
		return fmt.Errorf("reading coverage: %w", err)
	}
	merged := w
	for _, iv := range touching {
		if iv.Start.Before(merged.Start) {
			merged.Start = iv.Start.Time
		}
		if iv.End.After(merged.End) {
			merged.End = iv.End.Time
		}
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM sync_coverage WHERE workspace = ? AND start_at <= ? AND end_at >= ?`),
		workspace, s.timeArg(w.End), s.timeArg(w.Start)); err != nil {
		return fmt.Errorf("merging coverage: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO sync_coverage (workspace, start_at, end_at) VALUES (?, ?, ?)`),
		workspace, s.timeArg(merged.Start), s.timeArg(merged.End)); err != nil {
		return fmt.Errorf("writing coverage: %w", err)
	}
	return nil
}

// intervals reads (start_at, end_at) rows for one workspace.
func (s *Store) intervals(ctx context.Context, query, workspace string) ([]Interval, error) {
	var rows []struct {
		Start dbTime `db:"start_at"`
		End   dbTime `db:"end_at"`
	}
	if err := s.db.SelectContext(ctx, &rows, s.rebind(query), workspace); err != nil {
		return nil, err
	}
	out := make([]Interval, len(rows))
	for i, r := range rows {
		out[i] = Interval{Start: r.Start.Time, End: r.End.Time}
	}
	return out, nil
}

// CountWorkspaceRecords counts mirrored records first stored by workspace.
func (s *Store) CountWorkspaceRecords(ctx context.Context, workspace string) (int64, error) {
	var n int64
	if err := s.db.GetContext(ctx, &n, s.rebind(`SELECT COUNT(*) FROM activity_log WHERE workspace_id = ?`), workspace); err != nil {
		return 0, fmt.Errorf("counting records of %s: %w", workspace, err)
	}
	return n, nil
}

// WorkspaceSpan returns the oldest and newest record timestamps stored by a
// workspace (zero times when it has none).
func (s *Store) WorkspaceSpan(ctx context.Context, workspace string) (oldest, newest time.Time, err error) {
	var row struct {
		Oldest dbTime `db:"oldest"`
		Newest dbTime `db:"newest"`
	}
	err = s.db.GetContext(ctx, &row, s.rebind(`SELECT MIN(timestamp) AS oldest, MAX(timestamp) AS newest
		FROM activity_log WHERE workspace_id = ?`), workspace)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("reading record span of %s: %w", workspace, err)
	}
	return row.Oldest.Time, row.Newest.Time, nil
}
