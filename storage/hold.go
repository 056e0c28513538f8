package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tapd-mirror/tapd-mirror/integrity"
)

// HoldFilter selects the records a legal hold covers; zero fields do not
// filter, so an empty filter holds every record.
type HoldFilter struct {
	Since      int64  `json:"since,omitempty"` // Unix seconds, inclusive
	Until      int64  `json:"until,omitempty"` // Unix seconds, exclusive
	Serial     string `json:"serial,omitempty"`
	Username   string `json:"username,omitempty"`
	ActionType string `json:"action_type,omitempty"`
}

// Covers reports whether the filter selects a.
func (f HoldFilter) Covers(a Activity) bool {
	ts := a.Timestamp.Unix()
	return (f.Since == 0 || ts >= f.Since) && (f.Until == 0 || ts < f.Until) &&
		(f.Serial == "" || a.Serial == f.Serial) && (f.Username == "" || a.Username == f.Username) &&
		(f.ActionType == "" || a.ActionType == f.ActionType)
}

// condition is the filter as SQL over activity_log with ? placeholders.
func (s *Store) holdCondition(f HoldFilter) (string, []any) {
	conds, args := []string{"1 = 1"}, []any{}
	add := func(cond string, v any) { conds, args = append(conds, cond), append(args, v) }
	if f.Since != 0 {
		add("timestamp >= ?", s.timeArg(time.Unix(f.Since, 0)))
	}
	if f.Until != 0 {
		add("timestamp < ?", s.timeArg(time.Unix(f.Until, 0)))
	}
	if f.Serial != "" {
		add("serial = ?", f.Serial)
	}
	if f.Username != "" {
		add("username = ?", f.Username)
	}
	if f.ActionType != "" {
		add("action_type = ?", f.ActionType)
	}
	return "(" + strings.Join(conds, " AND ") + ")", args
}

// Hold is a legal hold.
type Hold struct {
	ID            int64
	Name          string
	Reason        string
	Filter        HoldFilter
	CreatedBy     string // the API token that placed it
	CreatedAt     time.Time
	ReleasedAt    time.Time // zero while active
	ReleasedBy    string
	ReleaseReason string
}

// Active reports whether the hold is in force.
func (h Hold) Active() bool { return h.ReleasedAt.IsZero() }

// Text is the filter as stored and logged: JSON, fields in a fixed order.
func (f HoldFilter) Text() string { return f.text() }

func (f HoldFilter) text() string {
	b, _ := json.Marshal(f) // strings and integers always encode
	return string(b)
}

// HeldError refuses to delete or purge a record that a legal hold covers.
type HeldError struct {
	Hold     Hold
	RecordID int64
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("record %d is under legal hold %q (hold %d)", e.RecordID, e.Hold.Name, e.Hold.ID)
}

// ErrReleased means the hold was already lifted.
var ErrReleased = errors.New("legal hold already released")

type holdRow struct {
	ID            int64  `db:"id"`
	Name          string `db:"name"`
	Reason        string `db:"reason"`
	Filter        string `db:"filter"`
	CreatedBy     string `db:"created_by"`
	CreatedAt     dbTime `db:"created_at"`
	ReleasedAt    dbTime `db:"released_at"`
	ReleasedBy    string `db:"released_by"`
	ReleaseReason string `db:"release_reason"`
}

const holdColumns = `id, name, reason, filter, created_by, created_at, released_at, released_by, release_reason`

func (r holdRow) hold() (Hold, error) {
	h := Hold{ID: r.ID, Name: r.Name, Reason: r.Reason, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt.Time,
		ReleasedAt: r.ReleasedAt.Time, ReleasedBy: r.ReleasedBy, ReleaseReason: r.ReleaseReason}
	if err := json.Unmarshal([]byte(r.Filter), &h.Filter); err != nil {
		return h, fmt.Errorf("legal hold %d: reading its filter: %w", r.ID, err)
	}
	return h, nil
}

func (s *Store) selectHolds(ctx context.Context, q sqlx.QueryerContext, where string, args ...any) ([]Hold, error) {
	var rows []holdRow
	if err := sqlx.SelectContext(ctx, q, &rows, s.rebind(`SELECT `+holdColumns+` FROM legal_hold`+where+` ORDER BY id`), args...); err != nil {
		return nil, fmt.Errorf("reading legal holds: %w", err)
	}
	out := make([]Hold, 0, len(rows))
	for _, r := range rows {
		h, err := r.hold()
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// ListHolds returns every hold, active or released, oldest first.
func (s *Store) ListHolds(ctx context.Context) ([]Hold, error) { return s.selectHolds(ctx, s.db, "") }

func (s *Store) activeHolds(ctx context.Context, q sqlx.QueryerContext) ([]Hold, error) {
	return s.selectHolds(ctx, q, ` WHERE released_at IS NULL`)
}

// checkHolds refuses removing any record an active hold covers.
func checkHolds(holds []Hold, removed []Activity) error {
	for _, h := range holds {
		for _, a := range removed {
			if h.Filter.Covers(a) {
				return &HeldError{Hold: h, RecordID: a.ID}
			}
		}
	}
	return nil
}

// firstHeld finds an active hold covering a record that matches cond (SQL
// over activity_log), for refusing a bulk removal before it starts.
func (s *Store) firstHeld(ctx context.Context, cond string, args []any) error {
	holds, err := s.activeHolds(ctx, s.db)
	if err != nil {
		return err
	}
	for _, h := range holds {
		hc, hargs := s.holdCondition(h.Filter)
		var id int64
		err := s.db.GetContext(ctx, &id, s.rebind(`SELECT id FROM activity_log WHERE `+cond+` AND `+hc+` ORDER BY id LIMIT 1`),
			append(append([]any{}, args...), hargs...)...)
		if isNoRows(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("checking legal hold %d: %w", h.ID, err)
		}
		return &HeldError{Hold: h, RecordID: id}
	}
	return nil
}

// CreateHold places a legal hold at the request of token; the hold is an
// event in the integrity log.
func (s *Store) CreateHold(ctx context.Context, name, reason string, f HoldFilter, token string) (Hold, error) {
	h := Hold{Name: name, Reason: reason, Filter: f, CreatedBy: token, CreatedAt: nowSecond()}
	err := s.inTx(ctx, "placing a legal hold", func(tx *sqlx.Tx) error {
		if err := tx.QueryRowxContext(ctx, s.rebind(`INSERT INTO legal_hold (name, reason, filter, created_by, created_at)
			VALUES (?, ?, ?, ?, ?) RETURNING id`), name, reason, f.text(), token, s.timeArg(h.CreatedAt)).Scan(&h.ID); err != nil {
			return err
		}
		if err := s.logEvents(ctx, tx, []integrity.Event{integrity.HoldEvent(
			integrity.Hold{ID: h.ID, Name: name, Reason: reason, Filter: f.text()}, token, h.CreatedAt)}, nil); err != nil {
			return err
		}
		return s.recordAccess(ctx, tx, 1)
	})
	return h, err
}

// ReleaseHold lifts hold id at the request of token, for reason; lifting is
// an event in the integrity log. ErrNotFound, or ErrReleased if already lifted.
func (s *Store) ReleaseHold(ctx context.Context, id int64, token, reason string) (Hold, error) {
	var h Hold
	err := s.inTx(ctx, fmt.Sprintf("releasing legal hold %d", id), func(tx *sqlx.Tx) error {
		holds, err := s.selectHolds(ctx, tx, ` WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if len(holds) == 0 {
			return ErrNotFound
		}
		if h = holds[0]; !h.Active() {
			return ErrReleased
		}
		h.ReleasedAt, h.ReleasedBy, h.ReleaseReason = nowSecond(), token, reason
		res, err := tx.ExecContext(ctx, s.rebind(`UPDATE legal_hold SET released_at = ?, released_by = ?, release_reason = ?
			WHERE id = ? AND released_at IS NULL`), s.timeArg(h.ReleasedAt), token, reason, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrReleased // released meanwhile by another process
		}
		if err := s.logEvents(ctx, tx, []integrity.Event{integrity.ReleaseEvent(
			integrity.Hold{ID: h.ID, Name: h.Name, Reason: reason, Filter: h.Filter.text()}, token, h.ReleasedAt)}, nil); err != nil {
			return err
		}
		return s.recordAccess(ctx, tx, 1)
	})
	return h, err
}
