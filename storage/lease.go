package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// ErrLeaseLost means a lease's holder no longer holds it: it expired and
// another holder took it. A run that sees it must stop without committing.
var ErrLeaseLost = errors.New("sync lease lost to another holder")

// Lease is one holder's claim on one sync target. Leases replace locks held
// on pooled connections: a lease costs no connection while its run works,
// works the same on PostgreSQL and SQLite and across processes, and a holder
// that died is taken over once its lease expires, or at once when it ran on
// the same host (see Holder).
type Lease struct {
	Target    string    `json:"target"`
	Holder    string    `json:"holder"`  // host:pid:token of the claim
	Process   string    `json:"process"` // host:pid
	RunID     int64     `json:"run_id,omitempty"`
	TakenAt   time.Time `json:"taken_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Owner     Holder    `json:"owner"` // the holder's host, pid and start
	// TakenOver, on a lease TakeLease just took, names the process whose
	// unexpired lease it took because that process is gone.
	TakenOver string `json:"-"`
}

type leaseRow struct {
	Target    string `db:"target"`
	Holder    string `db:"holder"`
	Process   string `db:"process"`
	RunID     *int64 `db:"run_id"`
	TakenAt   dbTime `db:"taken_at"`
	ExpiresAt dbTime `db:"expires_at"`
	Host      string `db:"host"`
	PID       int    `db:"pid"`
	Started   string `db:"started"`
}

const leaseColumns = `target, holder, process, run_id, taken_at, expires_at, host, pid, started`

func (r leaseRow) lease() Lease {
	l := Lease{Target: r.Target, Holder: r.Holder, Process: r.Process, TakenAt: r.TakenAt.Time, ExpiresAt: r.ExpiresAt.Time,
		Owner: Holder{Host: r.Host, PID: r.PID, Started: r.Started}}
	if r.RunID != nil {
		l.RunID = *r.RunID
	}
	return l
}

// TakeLease claims target for holder (of process, run by owner) in one
// atomic statement: it succeeds when nobody holds the target, when the
// current lease expired, or when the current lease belongs to the same
// process (whose in-process bookkeeping already guarantees it runs the
// target no more). A lease whose owner is gone from this host (killed,
// crashed: see Holder.GoneFrom) is taken over at once, fenced on its holder
// so two takers cannot both win; the lease returned then names it in
// TakenOver. When it fails, current is the lease in force.
func (s *Store) TakeLease(ctx context.Context, target, holder, process string, owner Holder, ttl time.Duration) (current Lease, ok bool, err error) {
	// Idempotent: a claim run twice by the same process is the same claim
	// (a second run finds its own lease and takes it again).
	err = s.inIdempotentTx(ctx, "taking the sync lease of "+target, func(tx *sqlx.Tx) error {
		now := time.Now()
		taken := Lease{Target: target, Holder: holder, Process: process, TakenAt: now, ExpiresAt: now.Add(ttl), Owner: owner}
		var got string
		err := tx.GetContext(ctx, &got, s.rebind(`INSERT INTO sync_lease (target, holder, process, run_id, taken_at, expires_at, host, pid, started)
			VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?)
			ON CONFLICT (target) DO UPDATE SET holder = excluded.holder, process = excluded.process, run_id = NULL,
				taken_at = excluded.taken_at, expires_at = excluded.expires_at,
				host = excluded.host, pid = excluded.pid, started = excluded.started
			WHERE sync_lease.expires_at <= ? OR sync_lease.process = ?
			RETURNING holder`), target, holder, process, s.timeArg(now), s.timeArg(now.Add(ttl)),
			owner.Host, owner.PID, owner.Started, s.timeArg(now), process)
		switch {
		case err == nil:
			current, ok = taken, true
			return nil
		case !isNoRows(err):
			return err
		}
		var row leaseRow
		err = tx.GetContext(ctx, &row, s.rebind(`SELECT `+leaseColumns+` FROM sync_lease WHERE target = ?`), target)
		switch {
		case isNoRows(err): // released in between: the caller may try again later
			current, ok = Lease{Target: target}, false
			return nil
		case err != nil:
			return fmt.Errorf("reading it: %w", err)
		}
		current, ok = row.lease(), false
		if !current.Owner.GoneFrom(owner.Host) {
			return nil
		}
		res, err := tx.ExecContext(ctx, s.rebind(`UPDATE sync_lease SET holder = ?, process = ?, run_id = NULL,
			taken_at = ?, expires_at = ?, host = ?, pid = ?, started = ? WHERE target = ? AND holder = ?`),
			holder, process, s.timeArg(now), s.timeArg(now.Add(ttl)), owner.Host, owner.PID, owner.Started, target, current.Holder)
		if err != nil {
			return fmt.Errorf("taking it over from %s: %w", current.Process, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("taking it over from %s: %w", current.Process, err)
		} else if n == 0 {
			return nil // another taker was first
		}
		taken.TakenOver = current.Process
		current, ok = taken, true
		return nil
	})
	if err != nil {
		return Lease{}, false, err
	}
	return current, ok, nil
}

// RenewLease extends holder's lease on target by ttl from now. ErrLeaseLost
// when another holder has taken it.
func (s *Store) RenewLease(ctx context.Context, target, holder string, ttl time.Duration) error {
	return s.inIdempotentTx(ctx, "renewing the sync lease of "+target, func(tx *sqlx.Tx) error {
		return s.renewLease(ctx, tx, target, holder, ttl)
	})
}

func (s *Store) renewLease(ctx context.Context, db sqlx.ExecerContext, target, holder string, ttl time.Duration) error {
	res, err := db.ExecContext(ctx, s.rebind(`UPDATE sync_lease SET expires_at = ? WHERE target = ? AND holder = ?`),
		s.timeArg(time.Now().Add(ttl)), target, holder)
	if err != nil {
		return fmt.Errorf("renewing the sync lease of %s: %w", target, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("renewing the sync lease of %s: %w", target, err)
	} else if n == 0 {
		return fmt.Errorf("%s: %w", target, ErrLeaseLost)
	}
	return nil
}

// SetLeaseRun records which run holds the lease, for status and take-overs.
func (s *Store) SetLeaseRun(ctx context.Context, target, holder string, runID int64) error {
	return s.inIdempotentTx(ctx, fmt.Sprintf("recording run %d on the sync lease of %s", runID, target), func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, s.rebind(`UPDATE sync_lease SET run_id = ? WHERE target = ? AND holder = ?`), runID, target, holder)
		return err
	})
}

// ReleaseLease gives up holder's lease on target (a no-op if it was lost).
func (s *Store) ReleaseLease(ctx context.Context, target, holder string) error {
	return s.inIdempotentTx(ctx, "releasing the sync lease of "+target, func(tx *sqlx.Tx) error {
		_, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM sync_lease WHERE target = ? AND holder = ?`), target, holder)
		return err
	})
}

// Leases returns every unexpired lease by target.
func (s *Store) Leases(ctx context.Context) (map[string]Lease, error) {
	var rows []leaseRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT `+leaseColumns+`
		FROM sync_lease WHERE expires_at > ?`), s.timeArg(time.Now())); err != nil {
		return nil, fmt.Errorf("reading sync leases: %w", err)
	}
	out := make(map[string]Lease, len(rows))
	for _, r := range rows {
		out[r.Target] = r.lease()
	}
	return out, nil
}
