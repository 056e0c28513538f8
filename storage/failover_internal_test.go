package storage

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/lib/pq"
)

func TestFailedOverTellsFailoversFromBadStatements(t *testing.T) {
	for err, want := range map[error]bool{
		&pq.Error{Code: "25006"}:                            true, // read-only: a demoted primary
		&pq.Error{Code: "57P01"}:                            true,
		&pq.Error{Code: "57P03"}:                            true,
		&pq.Error{Code: "08006"}:                            true,
		fmt.Errorf("upserting: %w", driver.ErrBadConn):      true,
		io.ErrUnexpectedEOF:                                 true,
		&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}: true,
		fmt.Errorf("pq: could not connect to any of the hosts:\n%w", errors.Join(errors.New("connecting to h1:1: server is in hot standby mode"))): true,
		&pq.Error{Code: "23505"}:                         false, // unique violation
		&pq.Error{Code: "42601"}:                         false, // syntax error
		&pq.Error{Code: "40001"}:                         false,
		errors.New("pq: password authentication failed"): false,
		context.Canceled:                                 false,
		ErrLeaseLost:                                     false,
	} {
		if got := failedOver(err); got != want {
			t.Errorf("failedOver(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestRetryFailoverRunsAgainOnlyWhatIsSafe(t *testing.T) {
	s := &Store{}
	failOnce := func(first txOutcome) (func() (txOutcome, error), *int) {
		n := 0
		return func() (txOutcome, error) {
			n++
			if n == 1 {
				return first, driver.ErrBadConn
			}
			return txDone, nil
		}, &n
	}
	for _, tc := range []struct {
		name       string
		first      txOutcome
		idempotent bool
		runs       int
		fails      bool
	}{
		{"failed over before COMMIT", txRolledBack, false, 2, false},
		{"COMMIT broken, idempotent", txMaybeWritten, true, 2, false},
		{"COMMIT broken, not idempotent: it may have committed", txMaybeWritten, false, 1, true},
		{"a bad statement", txDone, true, 1, true},
	} {
		attempt, n := failOnce(tc.first)
		err := s.retryFailover(context.Background(), tc.idempotent, attempt)
		if *n != tc.runs || (err != nil) != tc.fails {
			t.Errorf("%s: ran %d times (err %v), want %d (fails %v)", tc.name, *n, err, tc.runs, tc.fails)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := 0
	if err := s.retryFailover(ctx, true, func() (txOutcome, error) { n++; return txRolledBack, driver.ErrBadConn }); err == nil || n != 1 {
		t.Errorf("with the context canceled: ran %d times, err %v", n, err)
	}
}
