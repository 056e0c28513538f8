package storage

import (
	"context"
	"database/sql/driver"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// InTx and InIdempotentTx let tests run transactions through the store's
// one transaction helper.
var (
	InTx           = (*Store).inTx
	InIdempotentTx = (*Store).inIdempotentTx
)

// RetryAfterLandedCommit runs the transaction fn(s) returns as a failover
// that struck right after its first COMMIT landed leaves it: that attempt
// reports a broken connection, and the store's failover retry runs it again
// as it does an idempotent transaction. It returns how many attempts ran.
func RetryAfterLandedCommit(ctx context.Context, s *Store, fn func(tx *sqlx.Tx) error) (int, error) {
	attempts := 0
	err := s.retryFailover(ctx, true, func() (txOutcome, error) {
		attempts++
		outcome, err := s.txAttempt(ctx, "a transaction whose COMMIT lands and breaks", fn)
		if attempts == 1 && err == nil {
			return txMaybeWritten, fmt.Errorf("commit: %w", driver.ErrBadConn)
		}
		return outcome, err
	})
	return attempts, err
}

// CreateLeaseRunTx is the transaction CreateLeaseRun runs.
func CreateLeaseRunTx(s *Store, ctx context.Context, run *SyncRun, holder string) func(tx *sqlx.Tx) error {
	return s.createLeaseRun(ctx, run, holder)
}
