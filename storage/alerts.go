package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// AlertFiring is one firing of an alert rule (table alert_firing), with
// where it was sent (alert_delivery).
type AlertFiring struct {
	ID        int64
	Rule      string
	Key       string // the username, IP, project or user+IP it fired for
	Condition string // every | threshold | first_seen
	// WindowStart and WindowEnd are the record times of the first and last
	// matching record counted.
	WindowStart, WindowEnd      time.Time
	Count                       int64
	FirstRecordID, LastRecordID int64
	LogIndex                    int64 // the integrity log event that fired it
	FiredAt                     time.Time
	// Search is the console search of its records, without the times
	// (user=alice&action=download).
	Search     string
	Deliveries []AlertDelivery
}

// AlertDelivery is a firing's delivery to one notifier.
type AlertDelivery struct {
	FiringID  int64
	Notifier  string
	Status    string // pending | sent
	Attempts  int
	LastError string
	SentAt    time.Time // zero until sent
	// Grouped is how many firings the message that carried it held (1: alone).
	Grouped int
}

// Delivery statuses.
const (
	DeliveryPending = "pending"
	DeliverySent    = "sent"
)

// AlertStateRow is one rule's memory for one key; Delete removes it.
type AlertStateRow struct {
	Rule, Key, State string
	Delete           bool
}

// AlertCommit is what evaluating a range of the log produced: committed in
// one transaction, so a cursor never moves past a firing not stored.
type AlertCommit struct {
	Cursors map[string]int64 // rule → next index to evaluate
	State   []AlertStateRow
	Firings []AlertFiring // Deliveries name the notifiers (pending)
}

// AlertCursors reads every rule's cursor; a rule without one starts at 0.
func (s *Store) AlertCursors(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT rule, next_idx FROM alert_cursor`)
	if err != nil {
		return nil, fmt.Errorf("reading alert cursors: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var rule string
		var next int64
		if err := rows.Scan(&rule, &next); err != nil {
			return nil, fmt.Errorf("reading alert cursors: %w", err)
		}
		out[rule] = next
	}
	return out, rows.Err()
}

// AlertState reads rule's memory, key → state.
func (s *Store) AlertState(ctx context.Context, rule string) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT key, state FROM alert_state WHERE rule = ?`), rule)
	if err != nil {
		return nil, fmt.Errorf("reading the state of alert rule %s: %w", rule, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("reading the state of alert rule %s: %w", rule, err)
		}
		out[k] = v
	}
	return out, rows.Err()
}

// CommitAlerts stores c in one transaction and returns its firings with
// their ids.
func (s *Store) CommitAlerts(ctx context.Context, c AlertCommit) ([]AlertFiring, error) {
	var out []AlertFiring
	err := s.inTx(ctx, "committing alert firings", func(tx *sqlx.Tx) error {
		out = out[:0]
		// Many rows at once: a rule may fire for many keys in one range
		// (every user's new IP), and each statement is a round trip. A
		// rule fires at most once per event, so (rule, log_index) tells
		// which id is whose.
		const firingsPerInsert = 200 // 11 columns: 2200 parameters
		for start := 0; start < len(c.Firings); start += firingsPerInsert {
			part := c.Firings[start:min(start+firingsPerInsert, len(c.Firings))]
			args := make([]any, 0, 11*len(part))
			for _, f := range part {
				args = append(args, f.Rule, f.Key, f.Condition, f.WindowStart.Unix(), f.WindowEnd.Unix(), f.Count, f.FirstRecordID,
					f.LastRecordID, f.LogIndex, f.FiredAt.Unix(), f.Search)
			}
			rows, err := tx.QueryContext(ctx, s.rebind(`INSERT INTO alert_firing (rule, key, condition, window_start, window_end, count,
				first_record_id, last_record_id, log_index, fired_at, search) VALUES `+valueRows(len(part), 11)+` RETURNING id, rule, log_index`), args...)
			if err != nil {
				return fmt.Errorf("storing %d alert firings: %w", len(part), err)
			}
			ids := map[string]int64{}
			for rows.Next() {
				var id, idx int64
				var rule string
				if err := rows.Scan(&id, &rule, &idx); err != nil {
					rows.Close()
					return fmt.Errorf("storing alert firings: %w", err)
				}
				ids[fmt.Sprint(rule, "\x00", idx)] = id
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("storing alert firings: %w", err)
			}
			var dargs []any
			for _, f := range part {
				f.ID = ids[fmt.Sprint(f.Rule, "\x00", f.LogIndex)]
				if f.ID == 0 {
					return fmt.Errorf("storing alert firings: no id came back for %s at %d", f.Rule, f.LogIndex)
				}
				ds := make([]AlertDelivery, len(f.Deliveries))
				for i, d := range f.Deliveries {
					dargs = append(dargs, f.ID, d.Notifier)
					ds[i] = AlertDelivery{FiringID: f.ID, Notifier: d.Notifier, Status: DeliveryPending, Grouped: 1}
				}
				f.Deliveries = ds
				out = append(out, f)
			}
			for ds := 0; ds < len(dargs); ds += 2 * 400 {
				chunk := dargs[ds:min(ds+2*400, len(dargs))]
				if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO alert_delivery (firing_id, notifier) VALUES `+valueRows(len(chunk)/2, 2)), chunk...); err != nil {
					return fmt.Errorf("storing alert deliveries: %w", err)
				}
			}
		}
		var del []AlertStateRow
		var put []AlertStateRow
		for _, r := range c.State {
			if r.Delete {
				del = append(del, r)
			} else {
				put = append(put, r)
			}
		}
		for _, r := range del {
			if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM alert_state WHERE rule = ? AND key = ?`), r.Rule, r.Key); err != nil {
				return fmt.Errorf("removing alert state: %w", err)
			}
		}
		const perInsert = 300 // 900 parameters: well inside both databases' limits
		for start := 0; start < len(put); start += perInsert {
			part := put[start:min(start+perInsert, len(put))]
			args := make([]any, 0, 3*len(part))
			for _, r := range part {
				args = append(args, r.Rule, r.Key, r.State)
			}
			if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO alert_state (rule, key, state) VALUES `+valueRows(len(part), 3)+
				` ON CONFLICT (rule, key) DO UPDATE SET state = excluded.state`), args...); err != nil {
				return fmt.Errorf("saving alert state: %w", err)
			}
		}
		if len(c.Cursors) == 0 {
			return nil
		}
		args := make([]any, 0, 2*len(c.Cursors))
		for rule, next := range c.Cursors {
			args = append(args, rule, next)
		}
		if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO alert_cursor (rule, next_idx) VALUES `+valueRows(len(c.Cursors), 2)+`
			ON CONFLICT (rule) DO UPDATE SET next_idx = excluded.next_idx`), args...); err != nil {
			return fmt.Errorf("saving the cursors of %d alert rules: %w", len(c.Cursors), err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

const firingColumns = `id, rule, key, condition, window_start, window_end, count, first_record_id, last_record_id, log_index, fired_at, search`

func scanFiring(sc interface{ Scan(...any) error }) (AlertFiring, error) {
	var f AlertFiring
	var ws, we, fired int64
	err := sc.Scan(&f.ID, &f.Rule, &f.Key, &f.Condition, &ws, &we, &f.Count, &f.FirstRecordID, &f.LastRecordID, &f.LogIndex, &fired, &f.Search)
	f.WindowStart, f.WindowEnd, f.FiredAt = time.Unix(ws, 0).UTC(), time.Unix(we, 0).UTC(), time.Unix(fired, 0).UTC()
	return f, err
}

func (s *Store) queryFirings(ctx context.Context, q string, args ...any) ([]AlertFiring, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []AlertFiring{}
	for rows.Next() {
		f, err := scanFiring(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// PendingAlertDeliveries are the firings not yet sent to notifier, oldest
// first, at most limit.
func (s *Store) PendingAlertDeliveries(ctx context.Context, notifier string, limit int) ([]AlertFiring, error) {
	out, err := s.queryFirings(ctx, `SELECT `+firingColumns+` FROM alert_firing WHERE id IN
		(SELECT firing_id FROM alert_delivery WHERE notifier = ? AND status = 'pending') ORDER BY id LIMIT ?`, notifier, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the firings pending for notifier %s: %w", notifier, err)
	}
	return out, nil
}

// RecordAlertDelivery records one attempt to send firings ids to notifier
// in one message: sent, or failed with errMsg (they stay pending).
func (s *Store) RecordAlertDelivery(ctx context.Context, notifier string, ids []int64, sent bool, errMsg string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	in := "?" + strings.Repeat(", ?", len(ids)-1)
	var q string
	var args []any
	if sent {
		q = `UPDATE alert_delivery SET status = 'sent', attempts = attempts + 1, last_error = '', sent_at = ?, grouped = ?
			WHERE notifier = ? AND firing_id IN (` + in + `)`
		args = []any{at.Unix(), len(ids), notifier}
	} else {
		q = `UPDATE alert_delivery SET attempts = attempts + 1, last_error = ? WHERE notifier = ? AND firing_id IN (` + in + `)`
		args = []any{errMsg, notifier}
	}
	for _, id := range ids {
		args = append(args, id)
	}
	return s.inIdempotentTx(ctx, "recording alert deliveries to "+notifier, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, s.rebind(q), args...)
		return err
	})
}

// AlertQuery selects firings, newest first: those with an id below Before
// (0: from the newest), of Rule when set, at most Limit.
type AlertQuery struct {
	Rule   string
	Before int64
	Limit  int
}

// ListAlertFirings lists firings newest first, each with its deliveries.
func (s *Store) ListAlertFirings(ctx context.Context, q AlertQuery) ([]AlertFiring, error) {
	where, args := []string{"1 = 1"}, []any{}
	if q.Before > 0 {
		where, args = append(where, "id < ?"), append(args, q.Before)
	}
	if q.Rule != "" {
		where, args = append(where, "rule = ?"), append(args, q.Rule)
	}
	args = append(args, q.Limit)
	out, err := s.queryFirings(ctx, `SELECT `+firingColumns+` FROM alert_firing WHERE `+strings.Join(where, " AND ")+
		` ORDER BY id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("listing alert firings: %w", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	byID := map[int64]*AlertFiring{}
	ids := make([]any, len(out))
	for i := range out {
		byID[out[i].ID] = &out[i]
		out[i].Deliveries = []AlertDelivery{}
		ids[i] = out[i].ID
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(`SELECT firing_id, notifier, status, attempts, last_error, sent_at, grouped
		FROM alert_delivery WHERE firing_id IN (?`+strings.Repeat(", ?", len(ids)-1)+`) ORDER BY firing_id, notifier`), ids...)
	if err != nil {
		return nil, fmt.Errorf("listing alert deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d AlertDelivery
		var sentAt int64
		if err := rows.Scan(&d.FiringID, &d.Notifier, &d.Status, &d.Attempts, &d.LastError, &sentAt, &d.Grouped); err != nil {
			return nil, fmt.Errorf("listing alert deliveries: %w", err)
		}
		d.SentAt = timeOrZero(sentAt)
		f := byID[d.FiringID]
		f.Deliveries = append(f.Deliveries, d)
	}
	return out, rows.Err()
}
