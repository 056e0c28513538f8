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
	ErrRateLimited = errors.New("TAPD refused the request: quota exceeded")
	ErrServer      = errors.New("TAPD server error")
	ErrMalformed   = errors.New("TAPD sent a malformed response")
	// ErrBeyondHorizon is a 422 for a start_time older than TAPD's half
	// year: the window can no longer be fetched, which is a gap, not a
	// failure. It is an ErrParam too.
	ErrBeyondHorizon = fmt.Errorf("%w: start_time is older than TAPD's half year", ErrParam)
	// ErrBaseURL is TAPD's "Hello world from TAPD API" greeting (HTTP 200,
	// status 1, data a string) where data was expected: tapd.base_url does
	// not point at the API root. No retry or later run can fix it.
	ErrBaseURL = errors.New("tapd.base_url is not TAPD's API root")
)

// Error is a failed TAPD call: what kind, what TAPD said, and what to do.
type Error struct {
	Kind       error  // one of the sentinels above
	Op         string // e.g. "member_activity_log workspace 10074561"
	HTTPStatus int
	Info       string // TAPD's own message, or the first bytes of the body
	Hint       string // what the operator should do
	RequestID  string // TAPD's meta.request_id, when it sent one: what TAPD support asks for

	status       int  // the status TAPD meant: the envelope's when HTTP said 200
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
	if e.RequestID != "" {
		msg += " [TAPD request_id " + e.RequestID + "]"
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Kind }

// Retryable reports whether a later run may succeed without operator action.
func Retryable(err error) bool {
	return errors.Is(err, ErrRateLimited) || errors.Is(err, ErrServer) || errors.Is(err, ErrMalformed)
}

// Refused422 reports whether err is a parameter refusal with HTTP (or
// envelope) status 422, whatever its wording: for a window that starts near
// the horizon, TAPD's way of saying the start is too old, even when the text
// is not the known 半年 / "half year" one.
func Refused422(err error) bool {
	var e *Error
	return errors.As(err, &e) && errors.Is(e.Kind, ErrParam) && (e.HTTPStatus == 422 || e.status == 422)
}

// snippet returns the first bytes of a body for error messages.
func snippet(b []byte) string {
	const n = 120
	if len(b) > n {
		return fmt.Sprintf("%q…", b[:n])
	}
	return fmt.Sprintf("%q", b)
}
