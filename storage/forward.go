package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
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
