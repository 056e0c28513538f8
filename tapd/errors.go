package tapd

import (
	"errors"
	"fmt"
)

// Sentinel kinds; match with errors.Is(err, tapd.ErrAuth) and so on.
var (
	ErrAuth        = errors.New("TAPD rejected the credentials")
	ErrNotFound    = errors.New("TAPD workspace not found")
	ErrParam       = errors.New("TAPD rejected a parameter")
	ErrRateLimited = errors.New("TAPD rate limit still exceeded after retries")
	ErrServer      = errors.New("TAPD server error")
	ErrMalformed   = errors.New("TAPD sent a malformed response")
	// ErrBeyondHorizon is a 422 for a start_time older than TAPD's half
	// year: the window can no longer be fetched, which is a gap, not a
	// failure. It is an ErrParam too.
	ErrBeyondHorizon = fmt.Errorf("%w: start_time is older than TAPD's half year", ErrParam)
)

// Error is a failed TAPD call: what kind, what TAPD said, and what to do.
type Error struct {
	Kind       error  // one of the sentinels above
	Op         string // e.g. "member_activity_log workspace 10074561"
	HTTPStatus int
	Info       string // TAPD's own message, or the first bytes of the body
	Hint       string // what the operator should do

	tokenRefused bool // 401, or 422 about the access token: an OAuth token may be renewed
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %v", e.Op, e.Kind)
	if e.HTTPStatus != 0 {
		msg += fmt.Sprintf(" (HTTP %d)", e.HTTPStatus)
	}
	if e.Info != "" {
		msg += ": " + e.Info
	}
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Kind }

// Retryable reports whether a later run may succeed without operator action.
func Retryable(err error) bool {
	return errors.Is(err, ErrRateLimited) || errors.Is(err, ErrServer) || errors.Is(err, ErrMalformed)
}

// snippet returns the first bytes of a body for error messages.
func snippet(b []byte) string {
	const n = 120
	if len(b) > n {
		return fmt.Sprintf("%q…", b[:n])
	}
	return fmt.Sprintf("%q", b)
}
