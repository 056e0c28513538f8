package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// Run outcomes.
const (
	OutcomeRunning  = "running"
	OutcomeSuccess  = "success"
	OutcomePartial  = "partial" // finished, but some window did not reconcile (see warnings)
	OutcomeFailed   = "failed"
	OutcomeCanceled = "canceled"
	// OutcomeAbandoned marks a run whose process died mid-way (killed,
	// crashed); found and marked by the next run of its workspace.
	OutcomeAbandoned = "abandoned"
	// OutcomeLostLease marks a run that stopped because another process took
	// its target's lease (its own had expired): it committed nothing after.
	OutcomeLostLease = "lost_lease"
)

// SyncRun is the record of one sync of one workspace.
type SyncRun struct {
	ID          int64     `json:"id"`
	Workspace   string    `json:"workspace"`
	Trigger     string    `json:"trigger"` // schedule, manual, cli
	Outcome     string    `json:"outcome"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	WindowStart time.Time `json:"window_start,omitzero"`
	WindowEnd   time.Time `json:"window_end,omitzero"`
	Windows     int       `json:"windows"`
	Pages       int       `json:"pages"`
	Requests    int       `json:"requests"`
	Fetched     int       `json:"fetched"`
	Inserted    int       `json:"inserted"`
	Updated     int       `json:"updated"`
	Unchanged   int       `json:"unchanged"`
	Suppressed  int       `json:"suppressed"`
	RemoteTotal int       `json:"remote_total"`
	Warnings    []string  `json:"warnings"`
	Error       string    `json:"error"`
}

type syncRunRow struct {
	ID          int64  `db:"id"`
	Workspace   string `db:"workspace"`
	Trigger     string `db:"trigger"`
	Outcome     string `db:"outcome"`
	StartedAt   dbTime `db:"started_at"`
	FinishedAt  dbTime `db:"finished_at"`
	WindowStart dbTime `db:"window_start"`
	WindowEnd   dbTime `db:"window_end"`
	Windows     int    `db:"windows"`
	Pages       int    `db:"pages"`
	Requests    int    `db:"requests"`
	Fetched     int    `db:"fetched"`
	Inserted    int    `db:"inserted"`
	Updated     int    `db:"updated"`
	Unchanged   int    `db:"unchanged"`
	Suppressed  int    `db:"suppressed"`
	RemoteTotal int    `db:"remote_total"`
	Warnings    string `db:"warnings"`
	Error       string `db:"error"`
}

const syncRunColumns = `id, workspace, trigger, outcome, started_at, finished_at, window_start, window_end,
	windows, pages, requests, fetched, inserted, updated, unchanged, suppressed, remote_total, warnings, error`

func (r syncRunRow) run() SyncRun {
	out := SyncRun{ID: r.ID, Workspace: r.Workspace, Trigger: r.Trigger, Outcome: r.Outcome,
		StartedAt: r.StartedAt.Time, FinishedAt: r.FinishedAt.Time, WindowStart: r.WindowStart.Time,
		WindowEnd: r.WindowEnd.Time, Windows: r.Windows, Pages: r.Pages, Requests: r.Requests,
		Fetched: r.Fetched, Inserted: r.Inserted, Updated: r.Updated, Unchanged: r.Unchanged,
		Suppressed: r.Suppressed, RemoteTotal: r.RemoteTotal, Error: r.Error, Warnings: []string{}}
	json.Unmarshal([]byte(r.Warnings), &out.Warnings) //nolint:errcheck // written by UpdateRun as a JSON list
	return out
}

// CreateRun inserts run and sets its ID.
func (s *Store) CreateRun(ctx context.Context, run *SyncRun) error {
	// Not idempotent: a failover during its COMMIT is not retried, as it
	// could record the run twice.
	return s.inTx(ctx, "recording sync run of "+run.Workspace, func(tx *sqlx.Tx) error {
		return tx.QueryRowxContext(ctx, s.rebind(`INSERT INTO sync_run (workspace, trigger, outcome, started_at)
			VALUES (?, ?, ?, ?) RETURNING id`), run.Workspace, run.Trigger, run.Outcome, s.timeArg(run.StartedAt)).Scan(&run.ID)
	})
}

// AbandonRuns marks a workspace's runs still "running" as abandoned, except
// the ids in keep (runs of this process still recording their outcome), and
// returns how many. Call it only while holding the workspace's lease: then no
// other live process can be running them.
func (s *Store) AbandonRuns(ctx context.Context, workspace string, keep ...int64) (int64, error) {
	q := `UPDATE sync_run SET outcome = ?, finished_at = ?,
		error = 'the process running it ended before it finished (killed or crashed)'
		WHERE workspace = ? AND outcome = ?`
	args := []any{OutcomeAbandoned, s.timeArg(time.Now()), workspace, OutcomeRunning}
	for _, id := range keep {
		q += ` AND id <> ?`
		args = append(args, id)
	}
	var n int64
	err := s.inIdempotentTx(ctx, "marking abandoned runs of "+workspace, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, s.rebind(q), args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// UpdateRun writes every field of run.
func (s *Store) UpdateRun(ctx context.Context, run SyncRun) error {
	if run.Warnings == nil {
		run.Warnings = []string{}
	}
	warnings, _ := json.Marshal(run.Warnings)
	return s.inIdempotentTx(ctx, fmt.Sprintf("updating sync run %d", run.ID), func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, s.rebind(`UPDATE sync_run SET outcome = ?, finished_at = ?, window_start = ?,
			window_end = ?, windows = ?, pages = ?, requests = ?, fetched = ?, inserted = ?, updated = ?, unchanged = ?,
			suppressed = ?, remote_total = ?, warnings = ?, error = ? WHERE id = ?`),
			run.Outcome, s.nullTimeArg(run.FinishedAt), s.nullTimeArg(run.WindowStart), s.nullTimeArg(run.WindowEnd),
			run.Windows, run.Pages, run.Requests, run.Fetched, run.Inserted, run.Updated, run.Unchanged,
			run.Suppressed, run.RemoteTotal, string(warnings), run.Error, run.ID)
		return err
	})
}

// GetRun returns one run or ErrNotFound.
func (s *Store) GetRun(ctx context.Context, id int64) (SyncRun, error) {
	var r syncRunRow
	err := s.db.GetContext(ctx, &r, s.rebind(`SELECT `+syncRunColumns+` FROM sync_run WHERE id = ?`), id)
	if isNoRows(err) {
		return SyncRun{}, ErrNotFound
	}
	if err != nil {
		return SyncRun{}, fmt.Errorf("reading sync run %d: %w", id, err)
	}
	return r.run(), nil
}

// ListRuns returns runs latest first, optionally of one workspace and/or outcome.
func (s *Store) ListRuns(ctx context.Context, workspace, outcome string, limit, offset int) ([]SyncRun, error) {
	q := `SELECT ` + syncRunColumns + ` FROM sync_run WHERE (? = '' OR workspace = ?) AND (? = '' OR outcome = ?)
		ORDER BY id DESC LIMIT ? OFFSET ?`
	var rows []syncRunRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(q), workspace, workspace, outcome, outcome, limit, offset); err != nil {
		return nil, fmt.Errorf("listing sync runs: %w", err)
	}
	out := make([]SyncRun, len(rows))
	for i, r := range rows {
		out[i] = r.run()
	}
	return out, nil
}

// PruneRuns deletes finished runs that started before cutoff and returns how many.
func (s *Store) PruneRuns(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM sync_run WHERE started_at < ? AND outcome <> ?`),
		s.timeArg(cutoff), OutcomeRunning)
	if err != nil {
		return 0, fmt.Errorf("pruning sync run history: %w", err)
	}
	return res.RowsAffected()
}

// LatestRuns returns, per workspace, its latest run among outcomes, in one query.
func (s *Store) LatestRuns(ctx context.Context, outcomes ...string) (map[string]SyncRun, error) {
	q, args, err := sqlx.In(`SELECT `+syncRunColumns+` FROM sync_run WHERE id IN
		(SELECT MAX(id) FROM sync_run WHERE outcome IN (?) GROUP BY workspace)`, outcomes)
	if err != nil {
		return nil, err
	}
	var rows []syncRunRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(q), args...); err != nil {
		return nil, fmt.Errorf("reading latest sync runs: %w", err)
	}
	out := make(map[string]SyncRun, len(rows))
	for _, r := range rows {
		out[r.Workspace] = r.run()
	}
	return out, nil
}
