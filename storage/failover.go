package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/lib/pq"
)

// FailoverWait bounds how long a write keeps retrying while PostgreSQL fails
// over: pg_auto_failover promotes a standby in seconds; past this the write
// fails and the run is retried by the schedule.
const FailoverWait = time.Minute

// failedOver reports whether err means the server this connection reached
// went away or stopped taking writes — it shut down or crashed, the
// connection broke, or it is a standby now — rather than that the statement
// was wrong. A transaction that met such an error did not commit.
func failedOver(err error) bool {
	var pe *pq.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case "25006", // read_only_sql_transaction: a demoted primary
			"57P01", // admin_shutdown: stopped for the switch-over
			"57P02", // crash_shutdown
			"57P03": // cannot_connect_now: starting up or shutting down
			return true
		}
		return pe.Code.Class() == "08" // connection_exception
	}
	var ne *net.OpError
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &ne) || noPrimaryYet(err)
}

// noPrimaryYet is lib/pq's answer when every host of a host list answered but
// none is a primary: with target_session_attrs=read-write, the moment
// between demoting the old primary and promoting the new one. (lib/pq has no
// error type for these.)
func noPrimaryYet(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "could not connect to any of the hosts") &&
		(strings.Contains(msg, "session is read-only") || strings.Contains(msg, "server is in hot standby mode"))
}

// txOutcome says whether a failed transaction attempt may be run again.
type txOutcome int

const (
	txDone         txOutcome = iota // committed, or failed for good
	txRolledBack                    // failed over before COMMIT: nothing was written
	txMaybeWritten                  // failed over during COMMIT: it may have committed
)

// retryFailover runs attempt until it is done, for at most FailoverWait
// while PostgreSQL fails over. An attempt that failed over before COMMIT is
// always run again; one that failed during COMMIT only when idempotent,
// since it may have committed on the old primary and reached the new one.
func (s *Store) retryFailover(ctx context.Context, idempotent bool, attempt func() (txOutcome, error)) error {
	deadline := time.Now().Add(FailoverWait)
	wait := 50 * time.Millisecond
	for {
		outcome, err := attempt()
		retry := outcome == txRolledBack || (outcome == txMaybeWritten && idempotent)
		if err == nil || !retry || time.Now().Add(wait).After(deadline) {
			return err
		}
		s.log().Warn("database failed over or went away; retrying the transaction", "err", err, "retry_in", wait.String())
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
