package tapd

import (
	"net/http"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	c, _ := New(Options{MaxRetryAfter: time.Minute, RetryWaitMin: time.Second, RetryWaitMax: 30 * time.Second})
	resp := func(status int, retryAfter string) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &http.Response{StatusCode: status, Header: h}
	}
	cases := []struct {
		name    string
		resp    *http.Response
		attempt int
		lo, hi  time.Duration
	}{
		{"Retry-After honoured", resp(503, "3"), 0, 3 * time.Second, 3 * time.Second},
		{"Retry-After capped", resp(503, "86400"), 0, time.Minute, time.Minute},
		{"5xx exponential", resp(500, ""), 2, 2 * time.Second, 4 * time.Second},
		{"network error", nil, 0, 500 * time.Millisecond, time.Second},
	}
	for _, tc := range cases {
		for range 50 {
			d := c.backoff(c.opts.RetryWaitMin, c.opts.RetryWaitMax, tc.attempt, tc.resp)
			if d < tc.lo || d > tc.hi {
				t.Fatalf("%s: backoff = %v, want within [%v, %v]", tc.name, d, tc.lo, tc.hi)
			}
		}
	}
}
