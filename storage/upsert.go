package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
)

// upsertChunk rows per statement: 11 parameters a row keeps a chunk far under
// PostgreSQL's 65535 and SQLite's 32766 parameter limits.
const upsertChunk = 500

// UpsertResult says what a bulk upsert did with each record it was given.
type UpsertResult struct {
	Inserted   int // new rows
	Updated    int // existing rows whose content changed
	Unchanged  int // existing rows already identical (includes duplicates in the batch)
	Suppressed int // tombstoned: deleted on request, never re-inserted
}

// Add sums two results.
func (r *UpsertResult) Add(o UpsertResult) {
	r.Inserted += o.Inserted
	r.Updated += o.Updated
	r.Unchanged += o.Unchanged
	r.Suppressed += o.Suppressed
}

// UpsertMirrored stores mirrored records idempotently in one transaction,
// keyed on (source, source_id): re-reading a page never duplicates a row.
// Each record's WorkspaceID is recorded as a target that reported it. On
// PostgreSQL it first tries COPY, assuming the records are new.
func (s *Store) UpsertMirrored(ctx context.Context, batch []Activity) (UpsertResult, error) {
	return s.upsert(ctx, batch, true)
}

// UpsertReread is UpsertMirrored for records that are probably stored
// already (overlaps, re-verification, --full): it skips the COPY attempt,
// which would fail and cost a savepoint rollback.
func (s *Store) UpsertReread(ctx context.Context, batch []Activity) (UpsertResult, error) {
	return s.upsert(ctx, batch, false)
}

func (s *Store) upsert(ctx context.Context, batch []Activity, tryCopy bool) (UpsertResult, error) {
	var total UpsertResult
	if len(batch) == 0 {
		return total, nil
	}
	batch, dropped := lastCopies(batch)
	err := s.inIdempotentTx(ctx, fmt.Sprintf("upserting %d mirrored records", len(batch)), func(tx *sqlx.Tx) error {
		total = UpsertResult{Unchanged: dropped}
		if s.dialect == config.Postgres {
			// dialect: no fsync wait for record batches. WAL is flushed in order,
			// so the synchronous commit of the window's checkpoint (CommitWindow)
			// makes every batch before it durable too: a crash can lose batches
			// past the checkpoint, which the next run re-fetches anyway.
			if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit TO OFF`); err != nil {
				return err
			}
		}
		head, err := s.lockFirst(ctx, tx)
		if err != nil {
			return err
		}
		now := nowSecond()
		var logged int64
		var encoder logEncoder
		counts := countDeltas{}
		for start := 0; start < len(batch); start += upsertChunk {
			next := head.Size + logged // the index of the chunk's first event
			r, ev, err := s.upsertChunk(ctx, tx, batch[start:min(start+upsertChunk, len(batch))], tryCopy, now, counts, next)
			if err != nil {
				return err
			}
			total.Add(r)
			logged += int64(len(ev))
			encoder.add(ev)
		}
		if err := s.applyCounts(ctx, tx, counts); err != nil {
			return err
		}
		if logged == 0 || !s.logging() {
			return nil
		}
		// The whole batch is one append to the integrity log.
		enc, err := encoder.wait()
		if err != nil {
			return err
		}
		_, err = s.appendEncoded(ctx, tx, head, enc)
		return err
	})
	return total, err
}

// lastCopies keeps the last copy of each record in batch, in the order of
// first appearance, and says how many earlier copies it dropped: a record
// read twice in one batch (changed at TAPD between two pages) is written
// once, so its row changes at most once per transaction — the change must
// find the event of the version it replaces already in the log.
func lastCopies(batch []Activity) ([]Activity, int) {
	at := make(map[string]int, len(batch))
	out := make([]Activity, 0, len(batch))
	for _, a := range batch {
		if i, seen := at[a.SourceID]; seen && a.SourceID != "" {
			out[i] = a
			continue
		}
		at[a.SourceID] = len(out)
		out = append(out, a)
	}
	return out, len(batch) - len(out)
}

// upsertChunk stores one chunk and returns what it did and the events that
// log it, which the log will number from next on: an update event per
// changed row, then a record event per inserted row. Each row keeps the
// index of its event (log_idx).
func (s *Store) upsertChunk(ctx context.Context, tx *sqlx.Tx, chunk []Activity, tryCopy bool, now time.Time, counts countDeltas, next int64) (UpsertResult, []integrity.Event, error) {
	var res UpsertResult
	// Each record is in the chunk once: upsert kept its last copy (lastCopies).
	keys := make([]string, len(chunk))
	source := chunk[0].Source
	for i, a := range chunk {
		if a.Source != source || a.SourceID == "" {
			return res, nil, fmt.Errorf("mirrored record needs one source and a source_id (got %q/%q)", a.Source, a.SourceID)
		}
		keys[i] = a.SourceID
	}
	tombstoned, err := s.tombstoned(ctx, tx, source, keys)
	if err != nil {
		return res, nil, err
	}
	candidates := make([]Activity, 0, len(chunk))
	var reported []Activity // membership no row of the target implies (see recordMembership)
	for _, a := range chunk {
		if tombstoned[a.SourceID] {
			res.Suppressed++
			reported = append(reported, a)
		} else {
			candidates = append(candidates, a)
		}
	}
	if err := s.recordMembership(ctx, tx, reported); err != nil {
		return res, nil, err
	}
	if len(candidates) == 0 {
		return res, nil, nil
	}
	if tryCopy && s.dialect == config.Postgres {
		// Fast path for backfills: assume every record is new and COPY them in.
		ok, events, err := s.copyNew(ctx, tx, candidates, now, next)
		if err != nil {
			return res, nil, fmt.Errorf("copying %d records: %w", len(candidates), err)
		}
		if ok {
			res.Inserted += len(candidates)
			for _, a := range candidates {
				counts.add(s, a, 1)
			}
			return res, events, nil
		}
	}
	stored, err := s.storedBySourceID(ctx, tx, source, keys)
	if err != nil {
		return res, nil, err
	}
	var newRows, olds, changed []Activity // changed[i] is the fresh version of olds[i]
	reported = reported[:0]
	for _, a := range candidates {
		old, exists := stored[a.SourceID]
		if exists && old.WorkspaceID != a.WorkspaceID {
			reported = append(reported, a) // stored by another target
		}
		switch {
		case !exists:
			newRows = append(newRows, a)
		case sameContent(old, a):
			res.Unchanged++
		default:
			olds, changed = append(olds, old), append(changed, a)
		}
	}
	if err := s.recordMembership(ctx, tx, reported); err != nil {
		return res, nil, err
	}
	var events []integrity.Event
	if s.logging() && len(olds) > 0 {
		if err := s.resolveLogIdx(ctx, tx, olds); err != nil {
			return res, nil, err
		}
		if events, err = updateEvents(olds, changed, now); err != nil {
			return res, nil, err
		}
		if err := s.keepContent(ctx, tx, olds); err != nil {
			return res, nil, err
		}
	}
	for i, a := range changed {
		if err := s.updateMirrored(ctx, tx, olds[i], a, now, s.logIdxArg(next+int64(i))); err != nil {
			return res, nil, err
		}
		counts.add(s, olds[i], -1)
		counts.add(s, a, 1)
		res.Updated++
	}
	if len(newRows) == 0 {
		return res, events, nil
	}
	ids, inserted, err := s.insertValues(ctx, tx, s.insertArgs(newRows, now, next+int64(len(events))))
	if err != nil {
		return res, nil, fmt.Errorf("inserting %d records: %w", len(newRows), err)
	}
	res.Inserted += inserted
	res.Unchanged += len(newRows) - inserted
	for _, a := range newRows {
		counts.add(s, a, 1)
		if s.logging() {
			events = append(events, integrity.RecordEvent(writtenRecord(a, ids[a.SourceID], now)))
		}
	}
	return res, events, nil
}

// updateEvents logs changed records, olds[i] stored and changed[i] its fresh
// version: each new version points at the event holding the one it replaces.
func updateEvents(olds, changed []Activity, now time.Time) ([]integrity.Event, error) {
	events := make([]integrity.Event, 0, len(changed))
	for i, a := range changed {
		old := olds[i]
		if old.logIdx == nil {
			return nil, fmt.Errorf("updating record %d: %w (added behind the service's back? run tapd-mirror verify --database)", old.ID, ErrUnlogged)
		}
		// The row keeps its id, source, source_id and first workspace.
		a.Source, a.SourceID, a.WorkspaceID = old.Source, old.SourceID, old.WorkspaceID
		events = append(events, integrity.UpdateEvent(*old.logIdx, writtenRecord(a, old.ID, now)))
	}
	return events, nil
}

// logIdxArg is the log_idx a logged write stores: idx, or NULL without the log.
func (s *Store) logIdxArg(idx int64) any {
	if !s.logging() {
		return nil
	}
	return idx
}

// writtenRecord is the record a write stores, as the log encodes it: a with
// its id and ingested_at, extra as it reads back.
func writtenRecord(a Activity, id int64, ingested time.Time) integrity.Record {
	return integrity.Record{ID: id, Platform: a.Platform, Serial: a.Serial, ActionType: a.ActionType,
		ActionDetail: a.ActionDetail, Username: a.Username, Timestamp: a.Timestamp, Source: a.Source,
		SourceID: a.SourceID, WorkspaceID: a.WorkspaceID, Extra: storedExtra(nonNil(a.Extra)), IngestedAt: ingested}
}

// keyFilter is "source = ? AND source_id IN (keys)" for the dialect:
// PostgreSQL gets one array parameter, which it parses and plans far faster
// than hundreds of scalar ones; SQLite gets the IN list.
func (s *Store) keyFilter(source string, keys []string) (string, []any, error) {
	if s.dialect == config.Postgres {
		return `source = ? AND source_id = ANY(?::text[])`, []any{source, pq.Array(keys)}, nil
	}
	return sqlx.In(`source = ? AND source_id IN (?)`, source, keys)
}

func (s *Store) tombstoned(ctx context.Context, tx *sqlx.Tx, source string, keys []string) (map[string]bool, error) {
	where, args, err := s.keyFilter(source, keys)
	if err != nil {
		return nil, err
	}
	q := `SELECT source_id FROM activity_tombstone WHERE ` + where
	var ids []string
	if err := tx.SelectContext(ctx, &ids, s.rebind(q), args...); err != nil {
		return nil, fmt.Errorf("reading tombstones: %w", err)
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

func (s *Store) storedBySourceID(ctx context.Context, tx *sqlx.Tx, source string, keys []string) (map[string]Activity, error) {
	where, args, err := s.keyFilter(source, keys)
	if err != nil {
		return nil, err
	}
	q := `SELECT ` + loggedActivityColumns + ` FROM activity_log WHERE ` + where
	out := make(map[string]Activity, len(keys))
	err = eachActivity(ctx, tx, s.rebind(q), args, func(a Activity) error {
		out[a.SourceID] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading stored records: %w", err)
	}
	return out, nil
}

// insertColumns are the columns a mirrored insert writes, in order.
var insertColumns = []string{"platform", "serial", "action_type", "action_detail", "username", "timestamp",
	"source", "source_id", "workspace_id", "extra", "ingested_at", "log_idx"}

// sourceIDColumn is source_id's place in insertColumns.
var sourceIDColumn = slices.Index(insertColumns, "source_id")

// insertArgs flattens rows into insertColumns-ordered parameters; the rows'
// events will be numbered from next on.
func (s *Store) insertArgs(rows []Activity, now time.Time, next int64) []any {
	ingested := s.timeArg(now)
	args := make([]any, 0, len(rows)*len(insertColumns))
	for i, a := range rows {
		args = append(args, a.Platform, a.Serial, a.ActionType, a.ActionDetail, a.Username,
			s.timeArg(a.Timestamp), a.Source, a.SourceID, a.WorkspaceID, a.extraText(), ingested, s.logIdxArg(next+int64(i)))
	}
	return args
}

// insertValues is one multi-row INSERT … ON CONFLICT DO NOTHING; it returns
// the ids of the rows it inserted by source_id (nil without the log, which
// alone needs them) and how many it inserted.
func (s *Store) insertValues(ctx context.Context, tx *sqlx.Tx, args []any) (map[string]int64, int, error) {
	n := len(args) / len(insertColumns)
	q := `INSERT INTO activity_log (` + strings.Join(insertColumns, ", ") + `) VALUES ` +
		valueRows(n, len(insertColumns)) + ` ON CONFLICT (source, source_id) DO NOTHING`
	if !s.logging() {
		res, err := tx.ExecContext(ctx, s.rebind(q), args...)
		if err != nil {
			return nil, 0, err
		}
		affected, err := res.RowsAffected()
		return nil, int(affected), err
	}
	if s.dialect == config.SQLite {
		// dialect: this transaction holds SQLite's one write lock and read the
		// stored keys under it, so every row is new: the rows take the next
		// AUTOINCREMENT ids in VALUES order, and no RETURNING rows need reading.
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return nil, 0, err
		}
		last, err := res.LastInsertId()
		affected, aerr := res.RowsAffected()
		if err == nil && aerr == nil && affected == int64(n) {
			ids := make(map[string]int64, n)
			for i := range n {
				ids[args[i*len(insertColumns)+sourceIDColumn].(string)] = last - int64(n-1-i)
			}
			return ids, n, nil
		}
		return nil, 0, fmt.Errorf("inserted %d of %d new records (ids %v): the table changed under the write lock", affected, n, errors.Join(err, aerr))
	}
	rows, err := tx.QueryContext(ctx, s.rebind(q+` RETURNING id, source_id`), args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	ids := make(map[string]int64, n)
	for rows.Next() {
		var id int64
		var sourceID string
		if err := rows.Scan(&id, &sourceID); err != nil {
			return nil, 0, err
		}
		ids[sourceID] = id
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	if len(ids) != n {
		// Every logged writer holds the log's lock from its first step, so
		// rows absent when read are absent now: unless written by plain SQL.
		return nil, 0, fmt.Errorf("inserted %d of %d new records: the table changed under the integrity log's lock", len(ids), n)
	}
	return ids, n, nil
}

// copyNew is the PostgreSQL fast path (dialect:) for records assumed new.
// COPY cannot return the ids the log needs, so they are drawn from the
// table's sequence first (one statement) and copied in with the rows.
func (s *Store) copyNew(ctx context.Context, tx *sqlx.Tx, rows []Activity, now time.Time, next int64) (bool, []integrity.Event, error) {
	args := s.insertArgs(rows, now, next)
	if !s.logging() {
		ok, err := s.copyIn(ctx, tx, insertColumns, args)
		return ok, nil, err
	}
	// One block of len(rows) ids in one statement: every writer that draws
	// ids holds the log's lock (lockFirst), so none draws between nextval
	// and setval. (One that did, by plain SQL, would make the COPY collide
	// and the rows take the compare-and-insert path.)
	var first int64
	if err := tx.GetContext(ctx, &first, `SELECT setval(seq, nextval(seq) + $1 - 1) - $1 + 1
		FROM (SELECT pg_get_serial_sequence('activity_log', 'id') AS seq) AS q`, len(rows)); err != nil {
		return false, nil, fmt.Errorf("drawing %d record ids: %w", len(rows), err)
	}
	width := len(insertColumns)
	withIDs := make([]any, 0, len(rows)*(width+1))
	events := make([]integrity.Event, len(rows))
	for i, a := range rows {
		id := first + int64(i)
		withIDs = append(append(withIDs, id), args[i*width:(i+1)*width]...)
		events[i] = integrity.RecordEvent(writtenRecord(a, id, now))
	}
	ok, err := s.copyIn(ctx, tx, append([]string{"id"}, insertColumns...), withIDs)
	if !ok {
		events = nil
	}
	return ok, events, err
}

// copyIn is the PostgreSQL fast path (dialect:): COPY the rows straight
// into the table, as fast as any load can be. If any of them exists already,
// the unique index rejects the COPY; it is rolled back to a savepoint and ok
// is false, and the caller takes the compare-and-update path.
func (s *Store) copyIn(ctx context.Context, tx *sqlx.Tx, columns []string, args []any) (ok bool, err error) {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT mirror_copy`); err != nil {
		return false, err
	}
	copyErr := func() error {
		stmt, err := tx.PrepareContext(ctx, pq.CopyIn("activity_log", columns...))
		if err != nil {
			return err
		}
		defer stmt.Close()
		width := len(columns)
		for i := 0; i < len(args); i += width {
			if _, err := stmt.ExecContext(ctx, args[i:i+width]...); err != nil {
				return err
			}
		}
		_, err = stmt.ExecContext(ctx)
		return err
	}()
	var pqErr *pq.Error
	switch {
	case copyErr == nil:
		_, err = tx.ExecContext(ctx, `RELEASE SAVEPOINT mirror_copy`)
		return err == nil, err
	case errors.As(copyErr, &pqErr) && pqErr.Code == "23505": // unique_violation
		_, err = tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT mirror_copy`)
		return false, err
	default:
		return false, copyErr
	}
}

// updateMirrored replaces a mirrored record that changed at TAPD and keeps
// the version it replaces in activity_history: nothing is silently
// overwritten. ingested_at becomes now: when this version was stored.
func (s *Store) updateMirrored(ctx context.Context, tx *sqlx.Tx, old, a Activity, now time.Time, logIdx any) error {
	previous, _ := json.Marshal(map[string]any{ // maps of strings and numbers always encode
		"platform": old.Platform, "serial": old.Serial, "action_type": old.ActionType,
		"action_detail": old.ActionDetail, "username": old.Username, "timestamp": old.Timestamp.Unix(),
		"workspace_id": old.WorkspaceID, "extra": old.ExtraFields(),
	})
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO activity_history (activity_id, source_id, changed_at, previous)
		VALUES (?, ?, ?, ?)`), old.ID, old.SourceID, s.timeArg(now), string(previous)); err != nil {
		return fmt.Errorf("keeping the earlier version of record %s: %w", a.SourceID, err)
	}
	_, err := tx.ExecContext(ctx, s.rebind(`UPDATE activity_log SET platform = ?, serial = ?, action_type = ?,
		action_detail = ?, username = ?, timestamp = ?, extra = ?, ingested_at = ?, log_idx = ? WHERE source = ? AND source_id = ?`),
		a.Platform, a.Serial, a.ActionType, a.ActionDetail, a.Username, s.timeArg(a.Timestamp),
		a.extraText(), s.timeArg(now), logIdx, a.Source, a.SourceID)
	if err != nil {
		return fmt.Errorf("updating record %s: %w", a.SourceID, err)
	}
	return nil
}

// recordMembership notes that each record's WorkspaceID (its sync target)
// reported it. A live mirrored row is its own first target's membership
// (workspace_id): activity_target holds only what no row says — another
// target that reported a stored record, and the targets of records no longer
// in the table (tombstoned: TAPD did report them) — so the common case, a
// new record, writes nothing here. reportedBy* count both.
func (s *Store) recordMembership(ctx context.Context, tx *sqlx.Tx, chunk []Activity) error {
	if len(chunk) == 0 {
		return nil
	}
	if s.dialect == config.Postgres {
		// dialect: three array parameters instead of 3×N scalars.
		targets, ids, stamps := make([]string, len(chunk)), make([]string, len(chunk)), make([]int64, len(chunk))
		for i, a := range chunk {
			targets[i], ids[i], stamps[i] = a.WorkspaceID, a.SourceID, a.Timestamp.Unix()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO activity_target (target, source_id, timestamp)
			SELECT t, id, to_timestamp(ts) FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(t, id, ts)
			ON CONFLICT DO NOTHING`, pq.Array(targets), pq.Array(ids), pq.Array(stamps)); err != nil {
			return fmt.Errorf("recording which target reported each record: %w", err)
		}
		return nil
	}
	args := make([]any, 0, 3*len(chunk))
	for _, a := range chunk {
		args = append(args, a.WorkspaceID, a.SourceID, s.timeArg(a.Timestamp))
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO activity_target (target, source_id, timestamp) VALUES `+
		valueRows(len(chunk), 3)+` ON CONFLICT DO NOTHING`, args...); err != nil {
		return fmt.Errorf("recording which target reported each record: %w", err)
	}
	return nil
}

// keepMembership records, for mirrored rows about to leave the table, the
// membership their rows implied (recordMembership).
func (s *Store) keepMembership(ctx context.Context, tx *sqlx.Tx, removed []Activity) error {
	var mirrored []Activity
	for _, a := range removed {
		if a.Source == SourceTAPD && a.SourceID != "" {
			mirrored = append(mirrored, a)
		}
	}
	for start := 0; start < len(mirrored); start += upsertChunk {
		if err := s.recordMembership(ctx, tx, mirrored[start:min(start+upsertChunk, len(mirrored))]); err != nil {
			return err
		}
	}
	return nil
}
