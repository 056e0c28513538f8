package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
)

// purgeChunk is how many records one purge transaction removes.
const purgeChunk = 5000

// PurgeResult says what a retention purge did.
type PurgeResult struct {
	Purged int64 // records removed
	Held   int64 // records past the cutoff kept because a legal hold covers them
}

// Purge removes the records of source whose timestamp is before cutoff,
// except those an active legal hold covers, in transactions of purgeChunk
// records. Each removal is a purge event naming policy; the content of the
// record's events is withheld from then on (their body is cleared, their
// leaf hashes stay), its earlier versions are dropped, and a mirrored record
// leaves a tombstone so that no sync brings it back.
func (s *Store) Purge(ctx context.Context, source string, cutoff time.Time, policy string) (PurgeResult, error) {
	var res PurgeResult
	raced := false
	for {
		n, err := s.purgeChunk(ctx, source, cutoff, policy)
		var held *HeldError
		if errors.As(err, &held) && !raced {
			// A hold was placed while this chunk was chosen; the next choice sees it.
			raced = true
			continue
		}
		res.Purged += n
		if err != nil {
			return res, fmt.Errorf("purging %s records older than %s (%s): %w", source, cutoff.Format(time.RFC3339), policy, err)
		}
		if n == 0 {
			break
		}
	}
	if err := s.db.GetContext(ctx, &res.Held, s.rebind(`SELECT COUNT(*) FROM activity_log WHERE source = ? AND timestamp < ?`),
		source, s.timeArg(cutoff)); err != nil {
		return res, fmt.Errorf("counting held records: %w", err)
	}
	return res, nil
}

func (s *Store) purgeChunk(ctx context.Context, source string, cutoff time.Time, policy string) (int64, error) {
	var n int64
	err := s.inTx(ctx, "purging a chunk", func(tx *sqlx.Tx) error {
		if _, err := s.lockFirst(ctx, tx); err != nil {
			return err
		}
		holds, err := s.activeHolds(ctx, tx)
		if err != nil {
			return err
		}
		cond, args := `source = ? AND timestamp < ?`, []any{source, s.timeArg(cutoff)}
		for _, h := range holds {
			hc, hargs := s.holdCondition(h.Filter)
			cond += ` AND NOT ` + hc
			args = append(args, hargs...)
		}
		var removed []Activity
		if err := eachActivity(ctx, tx, s.rebind(`DELETE FROM activity_log WHERE id IN
			(SELECT id FROM activity_log WHERE `+cond+` ORDER BY id LIMIT ?) RETURNING `+loggedActivityColumns),
			append(args, purgeChunk), func(a Activity) error {
				removed = append(removed, a)
				return nil
			}); err != nil {
			return err
		}
		if len(removed) == 0 {
			return nil
		}
		now := nowSecond()
		if err := s.insertTombstones(ctx, tx, removed, now); err != nil {
			return err
		}
		ids := make([]int64, len(removed))
		for i, a := range removed {
			ids[i] = a.ID
		}
		q, qargs, err := s.int64In(`DELETE FROM activity_history WHERE activity_id`, ids)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, q, qargs...); err != nil {
			return fmt.Errorf("dropping earlier versions: %w", err)
		}
		if err := s.withholdContent(ctx, tx, removed); err != nil {
			return err
		}
		if err := s.countRemoved(ctx, tx, removed); err != nil {
			return err
		}
		if err := s.keepMembership(ctx, tx, removed); err != nil {
			return err
		}
		events, err := s.removalEvents(ctx, tx, removed, false, func(a Activity, prev int64) integrity.Event {
			return integrity.PurgeEvent(a.ID, prev, policy, now)
		})
		if err != nil {
			return err
		}
		if err := s.logEvents(ctx, tx, events, removed); err != nil {
			return err
		}
		n = int64(len(removed))
		return nil
	})
	return n, err
}

// insertTombstones tombstones the mirrored records among removed.
func (s *Store) insertTombstones(ctx context.Context, tx *sqlx.Tx, removed []Activity, now time.Time) error {
	var sources, ids []string
	for _, a := range removed {
		if a.SourceID != "" {
			sources, ids = append(sources, a.Source), append(ids, a.SourceID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if s.dialect == config.Postgres {
		if _, err := tx.ExecContext(ctx, `INSERT INTO activity_tombstone (source, source_id, deleted_at)
			SELECT src, id, $3 FROM unnest($1::text[], $2::text[]) AS u(src, id) ON CONFLICT DO NOTHING`,
			pq.Array(sources), pq.Array(ids), s.timeArg(now)); err != nil {
			return fmt.Errorf("writing tombstones: %w", err)
		}
		return nil
	}
	for start := 0; start < len(ids); start += sqliteRowsPerInsert {
		end := min(start+sqliteRowsPerInsert, len(ids))
		args := make([]any, 0, 3*(end-start))
		for i := start; i < end; i++ {
			args = append(args, sources[i], ids[i], s.timeArg(now))
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO activity_tombstone (source, source_id, deleted_at) VALUES `+
			valueRows(end-start, 3)+` ON CONFLICT DO NOTHING`, args...); err != nil {
			return fmt.Errorf("writing tombstones: %w", err)
		}
	}
	return nil
}

// withholdContent empties the content of the removed records' record and
// update events (their leaf hashes stay): the stored ones, found by record
// id, and the one each row held itself (its log_idx, body NULL).
func (s *Store) withholdContent(ctx context.Context, tx *sqlx.Tx, removed []Activity) error {
	if err := s.withholding(ctx, tx); err != nil {
		return err
	}
	ids, live := make([]int64, 0, len(removed)), make([]int64, 0, len(removed))
	for _, a := range removed {
		ids = append(ids, a.ID)
		if a.logIdx != nil {
			live = append(live, *a.logIdx)
		}
	}
	stored, args, err := s.int64In(`UPDATE integrity_event SET body = `+s.emptyBody()+`
		WHERE kind IN ('record', 'update') AND body IS NOT NULL AND record_id`, ids)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, stored, args...); err != nil {
		return fmt.Errorf("withholding purged content: %w", err)
	}
	if len(live) == 0 {
		return nil
	}
	held, args, err := s.int64In(`UPDATE integrity_event SET body = `+s.emptyBody()+` WHERE body IS NULL AND idx`, live)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, held, args...); err != nil {
		return fmt.Errorf("withholding purged content: %w", err)
	}
	return nil
}
