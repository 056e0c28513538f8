package storage

import (
	"context"
	"fmt"
	"slices"
	"strings"
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
	Origin       time.Time   // start of the first committed window; zero before any
	HighWater    time.Time   // checkpoint: every window before it was committed
	Coverage     []Interval  // verified-complete intervals, oldest first, disjoint
	Acknowledged []Interval  // gaps an operator acknowledged
	Reasons      []GapReason // spans known to be unfetchable, and why
	FreshAt      time.Time   // when a run last committed its newest window
	SettledAt    time.Time   // when recent windows were last re-counted at TAPD
	SettleRemote int         // TAPD's total at that check
	SettleStored int         // records reported by the target in the same span
}

// GapReason explains a span the mirror could not fetch. Retry false keeps it
// out of planning: asking again cannot help (e.g. a minute TAPD's query rules
// cannot reach).
type GapReason struct {
	Interval
	Reason string `json:"reason"`
	Retry  bool   `json:"retry"`
}

// Reasons the engine records for spans it cannot fetch.
const (
	// ReasonUnreachableMinute: with an exclusive end_time minute, the last
	// minute of a month is out of reach (a query may not cross months).
	ReasonUnreachableMinute = "unreachable: TAPD's end_time excludes its minute and a query may not cross months, so no query can ask for the last minute of a month"
	// ReasonBeyondHorizon: TAPD refused the span as older than its half year.
	ReasonBeyondHorizon = "beyond TAPD's half year: TAPD refused it before it could be fetched"
	// ReasonExpired: the span left TAPD's half year after the run planned
	// it and before the run reached it (a backfill slower than the horizon).
	ReasonExpired = "expired: it left TAPD's half year before it was fetched"
)

// Gap is a span the mirror never verified, whether an operator acknowledged
// it (then it is reported, but no longer warned about), and why, when known.
type Gap struct {
	Interval
	Acknowledged bool   `json:"acknowledged"`
	Reason       string `json:"reason,omitempty"`
}

// Synced reports whether any window was ever committed.
func (st SyncState) Synced() bool { return !st.HighWater.IsZero() }

// Gaps are the spans after Origin and before HighWater that were never
// verified complete: a window that did not reconcile or kept failing, a
// minute TAPD cannot serve, or TAPD time that fell out of the half year while
// the worker was away.
func (st SyncState) Gaps() []Gap {
	gaps := []Gap{}
	for _, h := range Holes(st.Origin, st.HighWater, st.Coverage) {
		acked := slices.ContainsFunc(st.Acknowledged, func(a Interval) bool {
			return a.Start.Equal(h.Start) && a.End.Equal(h.End)
		})
		var why []string
		for _, r := range st.Reasons {
			if r.Start.Before(h.End) && h.Start.Before(r.End) && !slices.Contains(why, r.Reason) {
				why = append(why, r.Reason)
			}
		}
		gaps = append(gaps, Gap{Interval: h, Acknowledged: acked, Reason: strings.Join(why, "; ")})
	}
	return gaps
}

// Retryable returns the holes of [from, to) worth fetching again: not
// covered and not known to be unfetchable.
func (st SyncState) Retryable(from, to time.Time) []Interval {
	known := slices.Clone(st.Coverage)
	for _, r := range st.Reasons {
		if !r.Retry {
			known = append(known, r.Interval)
		}
	}
	return Holes(from, to, Merge(known))
}

// OldestUnfetched is the oldest minute of [horizon, now) the mirror has not
// fetched and may still fetch: the next TAPD time to expire unmirrored. ok
// is false when everything up to now is covered or known unfetchable.
func (st SyncState) OldestUnfetched(horizon, now time.Time) (oldest time.Time, ok bool) {
	holes := st.Retryable(horizon.Truncate(time.Minute), now.Truncate(time.Minute))
	if len(holes) == 0 {
		return time.Time{}, false
	}
	return holes[0].Start, true
}

// Merge sorts intervals and joins the ones that overlap or touch.
func Merge(ivs []Interval) []Interval {
	ivs = slices.Clone(ivs)
	slices.SortFunc(ivs, func(a, b Interval) int { return a.Start.Compare(b.Start) })
	var out []Interval
	for _, iv := range ivs {
		if n := len(out); n > 0 && !iv.Start.After(out[n-1].End) {
			if iv.End.After(out[n-1].End) {
				out[n-1].End = iv.End
			}
			continue
		}
		out = append(out, iv)
	}
	return out
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
	states, err := s.syncStates(ctx, " WHERE workspace = ?", workspace)
	return states[workspace], err
}

// SyncStates reads every workspace's state in a fixed number of queries.
func (s *Store) SyncStates(ctx context.Context) (map[string]SyncState, error) {
	return s.syncStates(ctx, "")
}

func (s *Store) syncStates(ctx context.Context, where string, args ...any) (map[string]SyncState, error) {
	out := map[string]SyncState{}
	var rows []struct {
		Workspace    string `db:"workspace"`
		Origin       dbTime `db:"origin"`
		HighWater    dbTime `db:"high_water"`
		FreshAt      dbTime `db:"fresh_at"`
		SettledAt    dbTime `db:"settled_at"`
		SettleRemote int    `db:"settle_remote"`
		SettleStored int    `db:"settle_stored"`
	}
	if err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT workspace, origin, high_water, fresh_at, settled_at,
		settle_remote, settle_stored FROM sync_checkpoint`+where), args...); err != nil {
		return out, fmt.Errorf("reading sync checkpoints: %w", err)
	}
	for _, r := range rows {
		out[r.Workspace] = SyncState{Origin: r.Origin.Time, HighWater: r.HighWater.Time, FreshAt: r.FreshAt.Time,
			SettledAt: r.SettledAt.Time, SettleRemote: r.SettleRemote, SettleStored: r.SettleStored}
	}
	type span struct {
		Workspace string `db:"workspace"`
		Start     dbTime `db:"start_at"`
		End       dbTime `db:"end_at"`
		Reason    string `db:"reason"`
		Retry     bool   `db:"retry"`
	}
	read := func(what, query string, add func(*SyncState, span)) error {
		var spans []span
		if err := s.db.SelectContext(ctx, &spans, s.rebind(query+where+` ORDER BY workspace, start_at`), args...); err != nil {
			return fmt.Errorf("reading %s: %w", what, err)
		}
		for _, sp := range spans {
			st := out[sp.Workspace]
			add(&st, sp)
			out[sp.Workspace] = st
		}
		return nil
	}
	iv := func(sp span) Interval { return Interval{Start: sp.Start.Time, End: sp.End.Time} }
	if err := read("sync coverage", `SELECT workspace, start_at, end_at FROM sync_coverage`,
		func(st *SyncState, sp span) { st.Coverage = append(st.Coverage, iv(sp)) }); err != nil {
		return out, err
	}
	if err := read("acknowledged gaps", `SELECT workspace, start_at, end_at FROM sync_gap_ack`,
		func(st *SyncState, sp span) { st.Acknowledged = append(st.Acknowledged, iv(sp)) }); err != nil {
		return out, err
	}
	if err := read("gap reasons", `SELECT workspace, start_at, end_at, reason, retry FROM sync_gap_reason`,
		func(st *SyncState, sp span) {
			st.Reasons = append(st.Reasons, GapReason{Interval: iv(sp), Reason: sp.Reason, Retry: sp.Retry})
		}); err != nil {
		return out, err
	}
	return out, nil
}

// AcknowledgeGaps records every current gap of a workspace as acknowledged
// and returns them: they stay in status but are no longer warned about. The
// token in ctx (WithToken) is recorded as who acknowledged them.
func (s *Store) AcknowledgeGaps(ctx context.Context, workspace, note string) ([]Interval, error) {
	state, err := s.SyncState(ctx, workspace)
	if err != nil {
		return nil, err
	}
	acked := []Interval{}
	err = s.inIdempotentTx(ctx, "acknowledging gaps of "+workspace, func(tx *sqlx.Tx) error {
		acked = acked[:0] // a second run after a failover starts over
		for _, g := range state.Gaps() {
			if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO sync_gap_ack (workspace, start_at, end_at, acknowledged_at, note, acknowledged_by)
				VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace, start_at, end_at) DO NOTHING`),
				workspace, s.timeArg(g.Start), s.timeArg(g.End), s.timeArg(time.Now()), note, tokenOf(ctx)); err != nil {
				return err
			}
			acked = append(acked, g.Interval)
		}
		return s.recordAccess(ctx, tx, int64(len(acked)))
	})
	return acked, err
}

// WindowCommit is what a sync run records once a window's records are committed.
type WindowCommit struct {
	Workspace string
	Window    Interval    // the checkpoint moves up to its End (never back)
	Covered   []Interval  // the parts verified complete; they join coverage
	Gaps      []GapReason // parts known to be unfetchable, with why
	Fresh     bool        // the run's newest window: the workspace is fresh as of now
	// Holder fences the commit: it fails with ErrLeaseLost unless Holder still
	// holds the workspace's lease, which it renews by LeaseTTL. "" = unfenced.
	Holder   string
	LeaseTTL time.Duration
	// Total is TAPD's total for the verified window (nil: none to record),
	// kept per month for the completeness report.
	Total *WindowTotal
}

// CommitWindow records, after the window's records were committed, that it
// was fetched: checkpoint, coverage, gap reasons and the lease renewal, in
// one transaction.
func (s *Store) CommitWindow(ctx context.Context, c WindowCommit) error {
	return s.inIdempotentTx(ctx, "committing window of "+c.Workspace, func(tx *sqlx.Tx) error {
		if c.Holder != "" {
			if err := s.renewLease(ctx, tx, c.Workspace, c.Holder, c.LeaseTTL); err != nil {
				return err
			}
		}
		for _, iv := range c.Covered {
			if err := s.mergeCoverage(ctx, tx, c.Workspace, iv); err != nil {
				return err
			}
			// A reason for a span now verified is history, not a gap.
			if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM sync_gap_reason WHERE workspace = ? AND start_at >= ? AND end_at <= ?`),
				c.Workspace, s.timeArg(iv.Start), s.timeArg(iv.End)); err != nil {
				return fmt.Errorf("clearing gap reasons: %w", err)
			}
		}
		if c.Total != nil {
			if err := s.recordWindowTotal(ctx, tx, c.Workspace, *c.Total); err != nil {
				return err
			}
		}
		for _, g := range c.Gaps {
			if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO sync_gap_reason (workspace, start_at, end_at, reason, retry)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace, start_at, end_at) DO UPDATE SET reason = excluded.reason, retry = excluded.retry`),
				c.Workspace, s.timeArg(g.Start), s.timeArg(g.End), g.Reason, g.Retry); err != nil {
				return fmt.Errorf("recording gap reason: %w", err)
			}
		}
		now := s.timeArg(time.Now())
		var fresh any
		if c.Fresh {
			fresh = now
		}
		_, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO sync_checkpoint (workspace, origin, high_water, updated_at, fresh_at)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (workspace) DO UPDATE SET
				origin = CASE WHEN excluded.origin < sync_checkpoint.origin THEN excluded.origin ELSE sync_checkpoint.origin END,
				high_water = CASE WHEN excluded.high_water > sync_checkpoint.high_water THEN excluded.high_water ELSE sync_checkpoint.high_water END,
				updated_at = excluded.updated_at,
				fresh_at = COALESCE(excluded.fresh_at, sync_checkpoint.fresh_at)`),
			c.Workspace, s.timeArg(c.Window.Start), s.timeArg(c.Window.End), now, fresh)
		return err
	})
}

// RecordSettle saves the outcome of a settle check of a workspace, made at
// the sync engine's clock time at.
func (s *Store) RecordSettle(ctx context.Context, workspace string, at time.Time, remote, stored int) error {
	if _, err := s.db.ExecContext(ctx, s.rebind(`UPDATE sync_checkpoint SET settled_at = ?, settle_remote = ?, settle_stored = ?
		WHERE workspace = ?`), s.timeArg(at), remote, stored, workspace); err != nil {
		return fmt.Errorf("recording settle check of %s: %w", workspace, err)
	}
	return nil
}

// MarkSettled notes that a run fetched the whole settle span itself, which
// is as good as a settle check.
func (s *Store) MarkSettled(ctx context.Context, workspace string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, s.rebind(`UPDATE sync_checkpoint SET settled_at = ? WHERE workspace = ?`),
		s.timeArg(at), workspace); err != nil {
		return fmt.Errorf("recording settle check of %s: %w", workspace, err)
	}
	return nil
}

// Meta reads a fact the engine learned about TAPD ("" when unknown).
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.db.GetContext(ctx, &v, s.rebind(`SELECT value FROM sync_meta WHERE key = ?`), key)
	if err != nil && !isNoRows(err) {
		return "", fmt.Errorf("reading %s: %w", key, err)
	}
	return v, nil
}

// SetMeta stores a fact the engine learned about TAPD.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	if _, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO sync_meta (key, value, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`),
		key, value, s.timeArg(time.Now())); err != nil {
		return fmt.Errorf("saving %s: %w", key, err)
	}
	return nil
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

// Membership (which targets reported a record, recordMembership) is the
// live mirrored rows' workspace_id plus activity_target: each query below
// reads both.

// CountReported counts the records a target reported (membership), with
// since/until bounds when non-zero.
func (s *Store) CountReported(ctx context.Context, target string, since, until time.Time) (int, error) {
	bounds, args := "", []any{}
	if !since.IsZero() {
		bounds += ` AND timestamp >= ?`
		args = append(args, s.timeArg(since))
	}
	if !until.IsZero() {
		bounds += ` AND timestamp < ?`
		args = append(args, s.timeArg(until))
	}
	q := `SELECT (SELECT COUNT(*) FROM activity_target WHERE target = ?` + bounds + `)
		+ (SELECT COUNT(*) FROM activity_log WHERE workspace_id = ? AND source = 'tapd'` + bounds + `)`
	var n int
	if err := s.db.GetContext(ctx, &n, s.rebind(q), append(append([]any{target}, args...), append([]any{target}, args...)...)...); err != nil {
		return 0, fmt.Errorf("counting records reported by %s: %w", target, err)
	}
	return n, nil
}

// ReportedCounts returns, per target, how many records it reported.
func (s *Store) ReportedCounts(ctx context.Context) (map[string]int64, error) {
	var rows []struct {
		Target string `db:"target"`
		N      int64  `db:"n"`
	}
	if err := s.db.SelectContext(ctx, &rows, `SELECT target, COUNT(*) AS n FROM activity_target GROUP BY target
		UNION ALL SELECT workspace_id, COUNT(*) FROM activity_log WHERE source = 'tapd' GROUP BY workspace_id`); err != nil {
		return nil, fmt.Errorf("counting records per target: %w", err)
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.Target] += r.N
	}
	return out, nil
}

// WorkspaceSpan returns the oldest and newest record timestamps reported by a
// workspace (zero times when it has none).
func (s *Store) WorkspaceSpan(ctx context.Context, workspace string) (oldest, newest time.Time, err error) {
	var rows []struct {
		Oldest dbTime `db:"oldest"`
		Newest dbTime `db:"newest"`
	}
	err = s.db.SelectContext(ctx, &rows, s.rebind(`SELECT MIN(timestamp) AS oldest, MAX(timestamp) AS newest
		FROM activity_target WHERE target = ?
		UNION ALL SELECT MIN(timestamp), MAX(timestamp) FROM activity_log WHERE workspace_id = ? AND source = 'tapd'`), workspace, workspace)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("reading record span of %s: %w", workspace, err)
	}
	for _, r := range rows {
		if !r.Oldest.IsZero() && (oldest.IsZero() || r.Oldest.Before(oldest)) {
			oldest = r.Oldest.Time
		}
		if r.Newest.After(newest) {
			newest = r.Newest.Time
		}
	}
	return oldest, newest, nil
}
