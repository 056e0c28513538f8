package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/internal/jsontext"
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
	// logIdx is the index of the record's latest event in the integrity
	// log, on rows read with loggedActivityColumns (nil: not logged).
	logIdx *int64
}

// ExtraFields returns Extra, decoding it from the stored JSON on rows read
// back. Text that is not a JSON object is returned under "_unparsed".
func (a Activity) ExtraFields() map[string]string {
	if a.Extra != nil || a.extraJSON == "" {
		return nonNil(a.Extra)
	}
	if m, ok := jsontext.ParseStringMap(a.extraJSON); ok {
		return m
	}
	m := map[string]string{}
	if err := json.Unmarshal([]byte(a.extraJSON), &m); err != nil {
		return map[string]string{"_unparsed": a.extraJSON}
	}
	return m
}

// ExtraText is Extra as compact JSON text. Rows read back give their stored
// text, compacted but not decoded (exports write millions of them), so the
// key order is the database's: sorted on SQLite, by length then bytes on
// PostgreSQL (jsonb). Text that is not a JSON object comes back under
// "_unparsed".
func (a Activity) ExtraText() string {
	if a.Extra != nil || a.extraJSON == "" {
		return a.extraText()
	}
	if a.extraJSON[0] != '{' {
		return unparsedExtra(a.extraJSON)
	}
	return compactStoredJSON(a.extraJSON)
}

// unparsedExtra wraps stored extra text that is not a JSON object, so a
// reader still gets an object (and the text).
func unparsedExtra(raw string) string {
	return Activity{Extra: map[string]string{"_unparsed": raw}}.extraText()
}

// compactStoredJSON drops the blanks jsonb puts after ':' and ','. The text
// comes from the database, which only ever stores valid JSON, so a scan
// for strings is enough — no validation, and no copy when there is nothing
// to drop (SQLite keeps the compact text it was given).
func compactStoredJSON(s string) string {
	if !strings.Contains(s, ": ") && !strings.Contains(s, ", ") {
		return s
	}
	return string(appendCompact(make([]byte, 0, len(s)), []byte(s)))
}

// appendCompact appends s without blanks outside its strings: a jump from
// quote to quote (IndexByte), not a byte-by-byte state machine.
func appendCompact(out, s []byte) []byte {
	for len(s) > 0 {
		q := bytes.IndexByte(s, '"')
		if q < 0 {
			q = len(s)
		}
		for _, c := range s[:q] { // between strings: punctuation and blanks
			if c != ' ' && c != '\n' && c != '\t' && c != '\r' {
				out = append(out, c)
			}
		}
		s = s[q:]
		if len(s) == 0 {
			break
		}
		end := 1 // past the closing quote: the next quote not escaped by an odd run of backslashes
		for {
			j := bytes.IndexByte(s[end:], '"')
			if j < 0 {
				end = len(s)
				break
			}
			end += j + 1
			bs := 0
			for k := end - 2; k > 0 && s[k] == '\\'; k-- {
				bs++
			}
			if bs%2 == 0 {
				break
			}
		}
		out = append(out, s[:end]...)
		s = s[end:]
	}
	return out
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
	LogIdx       *int64  `db:"log_idx"`
}

const activityColumns = `id, platform, serial, action_type, action_detail, username, timestamp,
	source, source_id, workspace_id, extra, ingested_at`

// loggedActivityColumns are activityColumns and log_idx: for writes that
// log a change of the rows they read.
const loggedActivityColumns = activityColumns + `, log_idx`

func (r activityRow) activity() Activity {
	a := Activity{
		ID: r.ID, Platform: r.Platform, Serial: r.Serial, ActionType: r.ActionType,
		ActionDetail: r.ActionDetail, Username: r.Username, Timestamp: r.Timestamp.Time,
		Source: r.Source, WorkspaceID: r.WorkspaceID, IngestedAt: r.IngestedAt.Time, extraJSON: r.Extra, logIdx: r.LogIdx,
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

// InsertActivity stores one local record and returns its id; its record
// event enters the integrity log in the same transaction.
func (s *Store) InsertActivity(ctx context.Context, a Activity) (int64, error) {
	var sourceID any
	if a.SourceID != "" {
		sourceID = a.SourceID
	}
	if a.Source == "" {
		a.Source = SourceLocal
	}
	now := nowSecond()
	if a.Timestamp.IsZero() { // as the API does: the log needs a time
		a.Timestamp = now
	}
	var id int64
	err := s.inTx(ctx, "inserting activity", func(tx *sqlx.Tx) error {
		head, err := s.lockFirst(ctx, tx)
		if err != nil {
			return err
		}
		err = tx.QueryRowxContext(ctx, s.rebind(`-- InsertActivity
			INSERT INTO activity_log (platform, serial, action_type, action_detail, username, timestamp,
				source, source_id, workspace_id, extra, ingested_at, log_idx)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
			a.Platform, a.Serial, a.ActionType, a.ActionDetail, a.Username, s.timeArg(a.Timestamp),
			a.Source, sourceID, a.WorkspaceID, a.extraText(), s.timeArg(now), s.logIdxArg(head.Size)).Scan(&id)
		if err != nil {
			return err
		}
		counts := countDeltas{}
		counts.add(s, a, 1)
		if err := s.applyCounts(ctx, tx, counts); err != nil || !s.logging() {
			return err
		}
		_, err = s.appendLocked(ctx, tx, head, []integrity.Event{integrity.RecordEvent(writtenRecord(a, id, now))})
		return err
	})
	if err != nil {
		return 0, err
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
	err := eachActivity(ctx, s.reads, s.rebind(`SELECT `+activityColumns+` FROM activity_log`+where+
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
	var r activityRow
	// Scan into fixed fields, not StructScan: exports read millions of rows
	// and reflection per row was a tenth of their time.
	dst := []any{&r.ID, &r.Platform, &r.Serial, &r.ActionType, &r.ActionDetail, &r.Username, &r.Timestamp,
		&r.Source, &r.SourceID, &r.WorkspaceID, &r.Extra, &r.IngestedAt} // activityColumns' order
	if cols, err := rows.Columns(); err == nil && len(cols) > len(dst) {
		dst = append(dst, &r.LogIdx) // loggedActivityColumns
	}
	for rows.Next() {
		r.SourceID, r.LogIdx = nil, nil
		if err := rows.Scan(dst...); err != nil {
			return err
		}
		if err := fn(r.activity()); err != nil {
			return err
		}
	}
	return rows.Err()
}

// CountActivities returns the exact number of records matching f: from the
// daily and hourly counts plus the partial hours at the edges when f
// filters only by what they keep (platform, serial, action_type, source,
// since, until; see countFast), otherwise by COUNT(*) on the filter's index.
func (s *Store) CountActivities(ctx context.Context, f Filter) (int64, error) {
	if f.countable() {
		return s.countFast(ctx, f)
	}
	return s.countRows(ctx, f)
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

// tokenKey carries the name of the API token behind a request.
type tokenKey struct{}

// WithToken names the API token on whose request ctx's deletions and holds
// are made: the integrity log records it.
func WithToken(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, tokenKey{}, name)
}

func tokenOf(ctx context.Context) string {
	name, _ := ctx.Value(tokenKey{}).(string)
	return name
}

// deleteEvent is the event of deleting a at the request of the token in ctx.
func deleteEvent(ctx context.Context, at time.Time) func(a Activity, prev int64) integrity.Event {
	token := tokenOf(ctx)
	return func(a Activity, prev int64) integrity.Event { return integrity.DeleteEvent(a.ID, prev, token, at) }
}

// DeleteActivity removes one record. A mirrored record leaves a tombstone so
// that no later sync brings it back. The deletion is a delete event naming
// the token (WithToken); a record under a legal hold is refused with a
// *HeldError. It returns the deleted record.
func (s *Store) DeleteActivity(ctx context.Context, id int64) (Activity, error) {
	var deleted Activity
	err := s.inTx(ctx, fmt.Sprintf("deleting activity %d", id), func(tx *sqlx.Tx) error {
		if _, err := s.lockFirst(ctx, tx); err != nil {
			return err
		}
		var r activityRow
		err := tx.GetContext(ctx, &r, s.rebind(`SELECT `+loggedActivityColumns+` FROM activity_log WHERE id = ?`), id)
		if isNoRows(err) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		deleted = r.activity()
		now := nowSecond()
		if deleted.SourceID != "" {
			if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO activity_tombstone (source, source_id, deleted_at)
				VALUES (?, ?, ?) ON CONFLICT (source, source_id) DO NOTHING`),
				deleted.Source, deleted.SourceID, s.timeArg(now)); err != nil {
				return fmt.Errorf("writing tombstone: %w", err)
			}
		}
		res, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM activity_log WHERE id = ?`), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound // deleted meanwhile by another process
		}
		removed := []Activity{deleted}
		if err := s.countRemoved(ctx, tx, removed); err != nil {
			return err
		}
		if err := s.keepMembership(ctx, tx, removed); err != nil {
			return err
		}
		events, err := s.removalEvents(ctx, tx, removed, true, deleteEvent(ctx, now))
		if err != nil {
			return err
		}
		if err := s.logEvents(ctx, tx, events, removed); err != nil {
			return err
		}
		return s.recordAccess(ctx, tx, 1)
	})
	return deleted, err
}

// deleteAllChunk is how many rows one transaction of DeleteAllActivities
// removes: short transactions, so syncs writing beside it never wait long
// (SQLite has one writer at a time).
const deleteAllChunk = 5000

// DeleteAllActivities removes every record that existed when it started,
// tombstoning the mirrored ones, in transactions of deleteAllChunk rows
// (oldest id first), and returns how many rows were deleted. Each chunk is
// one append of delete events naming the token (WithToken). If a legal hold
// covers any of the records it deletes none (a *HeldError). Interrupted, it
// leaves whole chunks deleted, tombstoned and logged; calling it again
// finishes.
func (s *Store) DeleteAllActivities(ctx context.Context) (int64, error) {
	var maxID int64
	if err := s.db.GetContext(ctx, &maxID, `SELECT COALESCE(MAX(id), 0) FROM activity_log`); err != nil {
		return 0, fmt.Errorf("deleting all activities: %w", err)
	}
	if err := s.firstHeld(ctx, "id <= ?", []any{maxID}); err != nil {
		return 0, fmt.Errorf("deleting all activities: %w", err)
	}
	var total int64
	for {
		var n int64
		err := s.inTx(ctx, "deleting all activities", func(tx *sqlx.Tx) error {
			if _, err := s.lockFirst(ctx, tx); err != nil {
				return err
			}
			var upTo int64
			err := tx.GetContext(ctx, &upTo, s.rebind(`SELECT COALESCE(MAX(id), 0) FROM
				(SELECT id FROM activity_log WHERE id <= ? ORDER BY id LIMIT ?) AS chunk`), maxID, deleteAllChunk)
			if err != nil || upTo == 0 {
				return err
			}
			now := nowSecond()
			if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO activity_tombstone (source, source_id, deleted_at)
				SELECT source, source_id, ? FROM activity_log WHERE id <= ? AND source_id IS NOT NULL
				ON CONFLICT (source, source_id) DO NOTHING`), s.timeArg(now), upTo); err != nil {
				return fmt.Errorf("writing tombstones: %w", err)
			}
			// RETURNING: exactly the rows this transaction removed, for the log.
			var removed []Activity
			if err := eachActivity(ctx, tx, s.rebind(`DELETE FROM activity_log WHERE id <= ? RETURNING `+loggedActivityColumns),
				[]any{upTo}, func(a Activity) error {
					removed = append(removed, a)
					return nil
				}); err != nil {
				return err
			}
			if err := s.countRemoved(ctx, tx, removed); err != nil {
				return err
			}
			if err := s.keepMembership(ctx, tx, removed); err != nil {
				return err
			}
			events, err := s.removalEvents(ctx, tx, removed, true, deleteEvent(ctx, now))
			if err == nil {
				err = s.logEvents(ctx, tx, events, removed)
			}
			if err == nil {
				n = int64(len(removed))
			}
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

// extraText is Extra as the JSON text written to the extra column (invalid
// UTF-8 becomes U+FFFD, as storedExtra says). By hand: every stored record
// needs it, and encoding/json's reflection was a tenth of the sync's CPU.
func (a Activity) extraText() string {
	return string(jsontext.AppendStringMap(make([]byte, 0, 256), a.Extra))
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
