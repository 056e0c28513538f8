package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Sources of activity records.
const (
	SourceLocal = "local" // POSTed to the local API
	SourceTAPD  = "tapd"  // mirrored from TAPD
)

// Activity is one record of the common activity-log schema.
type Activity struct {
	ID           int64
	Platform     string
	Serial       string
	ActionType   string
	ActionDetail string
	Username     string
	Timestamp    time.Time
	Source       string
	SourceID     string // empty for local records
	WorkspaceID  string // the sync workspace that first stored it
	// Extra holds the raw TAPD fields on writes. Rows read back carry them
	// undecoded (most reads never need them): use ExtraFields.
	Extra      map[string]string
	extraJSON  string
	IngestedAt time.Time
}

// ExtraFields returns Extra, decoding it from the stored JSON on rows read
// back. Text that is not a JSON object is returned under "_unparsed".
func (a Activity) ExtraFields() map[string]string {
	if a.Extra != nil || a.extraJSON == "" {
		return nonNil(a.Extra)
	}
	m := map[string]string{}
	if err := json.Unmarshal([]byte(a.extraJSON), &m); err != nil {
		return map[string]string{"_unparsed": a.extraJSON}
	}
	return m
}

// activityRow is Activity as the database hands it back.
type activityRow struct {
	ID           int64   `db:"id"`
	Platform     string  `db:"platform"`
	Serial       string  `db:"serial"`
	ActionType   string  `db:"action_type"`
	ActionDetail string  `db:"action_detail"`
	Username     string  `db:"username"`
	Timestamp    dbTime  `db:"timestamp"`
	Source       string  `db:"source"`
	SourceID     *string `db:"source_id"`
	WorkspaceID  string  `db:"workspace_id"`
	Extra        string  `db:"extra"`
	IngestedAt   dbTime  `db:"ingested_at"`
}

const activityColumns = `id, platform, serial, action_type, action_detail, username, timestamp,
	source, source_id, workspace_id, extra, ingested_at`

func (r activityRow) activity() Activity {
	a := Activity{
		ID: r.ID, Platform: r.Platform, Serial: r.Serial, ActionType: r.ActionType,
		ActionDetail: r.ActionDetail, Username: r.Username, Timestamp: r.Timestamp.Time,
		Source: r.Source, WorkspaceID: r.WorkspaceID, IngestedAt: r.IngestedAt.Time, extraJSON: r.Extra,
	}
	if r.SourceID != nil {
		a.SourceID = *r.SourceID
	}
	return a
}

// Filter selects activity records; zero fields do not filter.
type Filter struct {
	Platform   string
	Serial     string
	ActionType string
	Username   string
	Source     string
	Since      time.Time // inclusive
	Until      time.Time // exclusive
	Object     string    // extra's operate_object_key (story, bug, attachment, …)
	IP         string    // extra's ip
	Query      string    // case-insensitive substring of action_detail (which holds the title)
	// After is a keyset position: only rows after it in newest-first order.
	After *Position
	// Before is one too: only rows before it in newest-first order (newer
	// rows), for paging back; see ListActivitiesBefore.
	Before *Position
}

// Position is a row's place in the newest-first order.
type Position struct {
	Timestamp time.Time
	ID        int64
}

// where builds the WHERE clause for f with ? placeholders.
func (s *Store) where(f Filter) (string, []any) {
	var conds []string
	var args []any
	eq := func(col, v string) {
		if v != "" {
			conds = append(conds, col+" = ?")
			args = append(args, v)
		}
	}
	eq("platform", f.Platform)
	eq("serial", f.Serial)
	eq("action_type", f.ActionType)
	eq("username", f.Username)
	eq("source", f.Source)
	if !f.Since.IsZero() {
		conds = append(conds, "timestamp >= ?")
		args = append(args, s.timeArg(f.Since))
	}
	if !f.Until.IsZero() {
		conds = append(conds, "timestamp < ?")
		args = append(args, s.timeArg(f.Until))
	}
	conds, args = s.searchConds(f, conds, args)
	if f.After != nil {
		// Row-value comparison walks the (timestamp DESC, id DESC) indexes.
		conds = append(conds, "(timestamp, id) < (?, ?)")
		args = append(args, s.timeArg(f.After.Timestamp), f.After.ID)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// InsertActivity stores one local record and returns its id.
func (s *Store) InsertActivity(ctx context.Context, a Activity) (int64, error) {
	var sourceID any
	if a.SourceID != "" {
		sourceID = a.SourceID
	}
	if a.Source == "" {
		a.Source = SourceLocal
	}
	var id int64
	err := s.db.QueryRowxContext(ctx, s.rebind(`-- InsertActivity
		INSERT INTO activity_log (platform, serial, action_type, action_detail, username, timestamp,
			source, source_id, workspace_id, extra, ingested_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		a.Platform, a.Serial, a.ActionType, a.ActionDetail, a.Username, s.timeArg(a.Timestamp),
		a.Source, sourceID, a.WorkspaceID, a.extraText(), s.timeArg(time.Now())).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("inserting activity: %w", err)
	}
	return id, nil
}

// ListActivities returns records matching f, newest first (timestamp, then
// id, both descending), skipping offset and returning at most limit.
func (s *Store) ListActivities(ctx context.Context, f Filter, limit, offset int) ([]Activity, error) {
	if rows, ok, err := s.probeText(ctx, f, "DESC", limit, offset); ok || err != nil {
		return rows, err
	}
	where, args := s.where(f)
	out := []Activity{}
	err := eachActivity(ctx, s.db, s.rebind(`SELECT `+activityColumns+` FROM activity_log`+where+
		` ORDER BY timestamp DESC, id DESC LIMIT ? OFFSET ?`), append(args, limit, offset), func(a Activity) error {
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing activities: %w", err)
	}
	return out, nil
}

// eachActivity runs an activity query and calls fn row by row.
func eachActivity(ctx context.Context, q sqlx.QueryerContext, query string, args []any, fn func(Activity) error) error {
	rows, err := q.QueryxContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var r activityRow
		if err := rows.StructScan(&r); err != nil {
			return err
		}
		if err := fn(r.activity()); err != nil {
			return err
		}
	}
	return rows.Err()
}

// StreamActivities calls fn for every record matching f, oldest first,
// reading rows one at a time so memory stays flat however many match.
func (s *Store) StreamActivities(ctx context.Context, f Filter, fn func(Activity) error) error {
	where, args := s.where(f)
	if err := eachActivity(ctx, s.exports, s.rebind(`SELECT `+activityColumns+` FROM activity_log`+where+
		` ORDER BY timestamp, id`), args, fn); err != nil {
		return fmt.Errorf("exporting activities: %w", err)
	}
	return nil
}

// CountActivities returns the exact number of records matching f.
func (s *Store) CountActivities(ctx context.Context, f Filter) (int64, error) {
	where, args := s.where(f)
	var n int64
	if err := s.db.GetContext(ctx, &n, s.rebind(`SELECT COUNT(*) FROM activity_log`+where), args...); err != nil {
		return 0, fmt.Errorf("counting activities: %w", err)
	}
	return n, nil
}

// GetActivity returns one record or ErrNotFound. Ids are never reused and a
// record's source never changes, so what it says about a record holds until
// that record is deleted.
func (s *Store) GetActivity(ctx context.Context, id int64) (Activity, error) {
	var r activityRow
	err := s.db.GetContext(ctx, &r, s.rebind(`SELECT `+activityColumns+` FROM activity_log WHERE id = ?`), id)
	if isNoRows(err) {
		return Activity{}, ErrNotFound
	}
	if err != nil {
		return Activity{}, fmt.Errorf("reading activity %d: %w", id, err)
	}
	return r.activity(), nil
}

// DeleteActivity removes one record. A mirrored record leaves a tombstone so
// that no later sync brings it back. It returns the deleted record.
func (s *Store) DeleteActivity(ctx context.Context, id int64) (Activity, error) {
	var deleted Activity
	err := s.inTx(ctx, fmt.Sprintf("deleting activity %d", id), func(tx *sqlx.Tx) error {
		var r activityRow
		err := tx.GetContext(ctx, &r, s.rebind(`SELECT `+activityColumns+` FROM activity_log WHERE id = ?`), id)
		if isNoRows(err) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		deleted = r.activity()
		if deleted.SourceID != "" {
			if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO activity_tombstone (source, source_id, deleted_at)
				VALUES (?, ?, ?) ON CONFLICT (source, source_id) DO NOTHING`),
				deleted.Source, deleted.SourceID, s.timeArg(time.Now())); err != nil {
				return fmt.Errorf("writing tombstone: %w", err)
			}
		}
		_, err = tx.ExecContext(ctx, s.rebind(`DELETE FROM activity_log WHERE id = ?`), id)
		return err
	})
	return deleted, err
}

// deleteAllChunk is how many rows one transaction of DeleteAllActivities
// removes: short transactions, so syncs writing beside it never wait long
// (SQLite has one writer at a time).
const deleteAllChunk = 5000

// DeleteAllActivities removes every record that existed when it started,
// tombstoning the mirrored ones, in transactions of deleteAllChunk rows
// (oldest id first), and returns how many rows were deleted. Interrupted, it
// leaves whole chunks deleted and tombstoned; calling it again finishes.
func (s *Store) DeleteAllActivities(ctx context.Context) (int64, error) {
	var maxID int64
	if err := s.db.GetContext(ctx, &maxID, `SELECT COALESCE(MAX(id), 0) FROM activity_log`); err != nil {
		return 0, fmt.Errorf("deleting all activities: %w", err)
	}
	var total int64
	for {
		var n int64
		err := s.inTx(ctx, "deleting all activities", func(tx *sqlx.Tx) error {
			var upTo int64
			err := tx.GetContext(ctx, &upTo, s.rebind(`SELECT COALESCE(MAX(id), 0) FROM
				(SELECT id FROM activity_log WHERE id <= ? ORDER BY id LIMIT ?) AS chunk`), maxID, deleteAllChunk)
			if err != nil || upTo == 0 {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO activity_tombstone (source, source_id, deleted_at)
				SELECT source, source_id, ? FROM activity_log WHERE id <= ? AND source_id IS NOT NULL
				ON CONFLICT (source, source_id) DO NOTHING`), s.timeArg(time.Now()), upTo); err != nil {
				return fmt.Errorf("writing tombstones: %w", err)
			}
			res, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM activity_log WHERE id <= ?`), upTo)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
}

// CountTombstones returns how many mirrored records were deleted on request.
func (s *Store) CountTombstones(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.GetContext(ctx, &n, `SELECT COUNT(*) FROM activity_tombstone`); err != nil {
		return 0, fmt.Errorf("counting tombstones: %w", err)
	}
	return n, nil
}

// extraText is Extra as the JSON text written to the extra column. Encoding a
// map of strings cannot fail (invalid UTF-8 becomes U+FFFD).
func (a Activity) extraText() string {
	b, _ := json.Marshal(nonNil(a.Extra))
	return string(b)
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// sameContent reports whether a stored mirrored record already says what a
// fresh copy says. WorkspaceID is not compared: the first workspace keeps it.
func sameContent(stored, fresh Activity) bool {
	return stored.Platform == fresh.Platform && stored.Serial == fresh.Serial &&
		stored.ActionType == fresh.ActionType && stored.ActionDetail == fresh.ActionDetail &&
		stored.Username == fresh.Username && stored.Timestamp.Equal(fresh.Timestamp) &&
		maps.Equal(stored.ExtraFields(), fresh.ExtraFields())
}
