package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
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
func (s *Store) UpsertMirrored(ctx context.Context, batch []Activity) (UpsertResult, error) {
	var total UpsertResult
	if len(batch) == 0 {
		return total, nil
	}
	err := s.inTx(ctx, fmt.Sprintf("upserting %d mirrored records", len(batch)), func(tx *sqlx.Tx) error {
		total = UpsertResult{}
		for start := 0; start < len(batch); start += upsertChunk {
			r, err := s.upsertChunk(ctx, tx, batch[start:min(start+upsertChunk, len(batch))])
			if err != nil {
				return err
			}
			total.Add(r)
		}
		return nil
	})
	return total, err
}

func (s *Store) upsertChunk(ctx context.Context, tx *sqlx.Tx, chunk []Activity) (UpsertResult, error) {
	var res UpsertResult
	// Last copy of a record in the chunk wins; earlier copies count as unchanged.
	fresh := make(map[string]Activity, len(chunk))
	keys := make([]string, 0, len(chunk))
	source := chunk[0].Source
	for _, a := range chunk {
		if a.Source != source || a.SourceID == "" {
			return res, fmt.Errorf("mirrored record needs one source and a source_id (got %q/%q)", a.Source, a.SourceID)
		}
		if _, dup := fresh[a.SourceID]; dup {
			res.Unchanged++
		} else {
			keys = append(keys, a.SourceID)
		}
		fresh[a.SourceID] = a
	}

	tombstoned, err := s.tombstoned(ctx, tx, source, keys)
	if err != nil {
		return res, err
	}
	stored, err := s.storedBySourceID(ctx, tx, source, keys)
	if err != nil {
		return res, err
	}
	var toInsert []Activity
	for _, k := range keys {
		a := fresh[k]
		old, exists := stored[k]
		switch {
		case tombstoned[k]:
			res.Suppressed++
		case !exists:
			toInsert = append(toInsert, a)
		case sameContent(old, a):
			res.Unchanged++
		default:
			if err := s.updateMirrored(ctx, tx, a); err != nil {
				return res, err
			}
			res.Updated++
		}
	}
	inserted, err := s.insertMany(ctx, tx, toInsert)
	if err != nil {
		return res, err
	}
	res.Inserted += inserted
	// A concurrent writer (another replica) inserted the rest first: same content.
	res.Unchanged += len(toInsert) - inserted
	return res, nil
}

func (s *Store) tombstoned(ctx context.Context, tx *sqlx.Tx, source string, keys []string) (map[string]bool, error) {
	q, args, err := sqlx.In(`SELECT source_id FROM activity_tombstone WHERE source = ? AND source_id IN (?)`, source, keys)
	if err != nil {
		return nil, err
	}
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
	q, args, err := sqlx.In(`SELECT `+activityColumns+` FROM activity_log WHERE source = ? AND source_id IN (?)`, source, keys)
	if err != nil {
		return nil, err
	}
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

func (s *Store) insertMany(ctx context.Context, tx *sqlx.Tx, rows []Activity) (int, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO activity_log (platform, serial, action_type, action_detail, username, timestamp,
		source, source_id, workspace_id, extra, ingested_at) VALUES `)
	args := make([]any, 0, len(rows)*11)
	now := s.timeArg(time.Now())
	for i, a := range rows {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?)")
		extra, err := json.Marshal(nonNil(a.Extra))
		if err != nil {
			return 0, fmt.Errorf("encoding extra of %s: %w", a.SourceID, err)
		}
		args = append(args, a.Platform, a.Serial, a.ActionType, a.ActionDetail, a.Username,
			s.timeArg(a.Timestamp), a.Source, a.SourceID, a.WorkspaceID, string(extra), now)
	}
	b.WriteString(` ON CONFLICT (source, source_id) DO NOTHING`)
	res, err := tx.ExecContext(ctx, s.rebind(b.String()), args...)
	if err != nil {
		return 0, fmt.Errorf("inserting %d records: %w", len(rows), err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

func (s *Store) updateMirrored(ctx context.Context, tx *sqlx.Tx, a Activity) error {
	extra, err := json.Marshal(nonNil(a.Extra))
	if err != nil {
		return fmt.Errorf("encoding extra of %s: %w", a.SourceID, err)
	}
	_, err = tx.ExecContext(ctx, s.rebind(`UPDATE activity_log SET platform = ?, serial = ?, action_type = ?,
		action_detail = ?, username = ?, timestamp = ?, extra = ? WHERE source = ? AND source_id = ?`),
		a.Platform, a.Serial, a.ActionType, a.ActionDetail, a.Username, s.timeArg(a.Timestamp),
		string(extra), a.Source, a.SourceID)
	if err != nil {
		return fmt.Errorf("updating record %s: %w", a.SourceID, err)
	}
	return nil
}
