package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// ForwardCursor is a forwarding destination's place in the integrity log
// and its delivery status (table forward_cursor).
type ForwardCursor struct {
	Name string
	// Next is the first index the destination has not acknowledged.
	Next         int64
	LastSuccess  time.Time // zero: never
	LastError    string    // the latest failure, cleared by a success
	FailingSince time.Time // the first of the current run of failures; zero when none
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func timeOrZero(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

// ForwardCursor reads destination name's cursor; one never saved starts at
// index 0, the log's first event.
func (s *Store) ForwardCursor(ctx context.Context, name string) (ForwardCursor, error) {
	c := ForwardCursor{Name: name}
	var success, failing int64
	err := s.db.QueryRowContext(ctx, s.rebind(`SELECT next_idx, last_success, last_error, failing_since FROM forward_cursor WHERE name = ?`), name).
		Scan(&c.Next, &success, &c.LastError, &failing)
	if errors.Is(err, sql.ErrNoRows) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("reading forward cursor %s: %w", name, err)
	}
	c.LastSuccess, c.FailingSince = timeOrZero(success), timeOrZero(failing)
	return c, nil
}

// SaveForwardCursor stores c. Callers move Next only after the destination
// acknowledged every event before it.
func (s *Store) SaveForwardCursor(ctx context.Context, c ForwardCursor) error {
	_, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO forward_cursor (name, next_idx, last_success, last_error, failing_since)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET next_idx = excluded.next_idx, last_success = excluded.last_success,
		last_error = excluded.last_error, failing_since = excluded.failing_since`),
		c.Name, c.Next, unixOrZero(c.LastSuccess), c.LastError, unixOrZero(c.FailingSince))
	if err != nil {
		return fmt.Errorf("saving forward cursor %s at %d: %w", c.Name, c.Next, err)
	}
	return nil
}

// ReplayForward moves destination name's cursor back to from and leaves a
// replay request the running forwarder takes before its next batch (one
// transaction, so a forwarder reading the row sees both or neither, and
// the access entry ctx carries is recorded with it).
func (s *Store) ReplayForward(ctx context.Context, name string, from int64) error {
	return s.inIdempotentTx(ctx, "replaying forward destination "+name, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO forward_cursor (name, next_idx, replay_from) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET next_idx = excluded.next_idx, replay_from = excluded.replay_from`), name, from, from); err != nil {
			return err
		}
		return s.recordAccess(ctx, tx, 1) // who moved it back, with it (WithAccess)
	})
}

// TakeForwardReplay returns and clears destination name's pending replay
// request, if any.
func (s *Store) TakeForwardReplay(ctx context.Context, name string) (from int64, ok bool, err error) {
	var pending sql.NullInt64
	err = s.db.QueryRowContext(ctx, s.rebind(`SELECT replay_from FROM forward_cursor WHERE name = ?`), name).Scan(&pending)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !pending.Valid) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reading forward replay request %s: %w", name, err)
	}
	err = s.inIdempotentTx(ctx, "taking forward replay request "+name, func(tx *sqlx.Tx) error {
		// The latest request wins: read it again inside the transaction.
		if err := tx.QueryRowContext(ctx, s.rebind(`SELECT replay_from FROM forward_cursor WHERE name = ?`), name).Scan(&pending); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.rebind(`UPDATE forward_cursor SET replay_from = NULL WHERE name = ?`), name)
		return err
	})
	if err != nil || !pending.Valid {
		return 0, false, err
	}
	return pending.Int64, true, nil
}

// FirstIndexSince is the index of the first event of the log that happened
// at or after t (events are appended in time order), or the log's size
// when none did.
func (s *Store) FirstIndexSince(ctx context.Context, t time.Time) (int64, error) {
	head, err := s.Head(ctx)
	if err != nil {
		return 0, err
	}
	lo, hi := int64(0), head.Size // the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		when, err := s.eventTimeFrom(ctx, mid, hi)
		if err != nil {
			return 0, err
		}
		if when.IsZero() || !when.Before(t) { // zero: only withheld events from mid to hi
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// eventTimeFrom is the time of the first event in [from, to) whose content
// is kept (a purge withholds some), zero if none.
func (s *Store) eventTimeFrom(ctx context.Context, from, to int64) (time.Time, error) {
	for from < to {
		end := min(from+64, to)
		evs, err := s.ReadEvents(ctx, from, end)
		if err != nil {
			return time.Time{}, err
		}
		for _, e := range evs {
			if e.Event != nil {
				return e.Event.When(), nil
			}
		}
		from = end
	}
	return time.Time{}, nil
}
