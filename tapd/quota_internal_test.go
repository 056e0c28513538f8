package tapd

import (
	"math"
	"net/http"
	"testing"
	"time"
)

func TestParseQuota(t *testing.T) {
	for body, want := range map[string]float64{
		`{"status":429,"data":"","info":"To many requests, api account bot! max request rates is 1800req\/10min"}`: 180,
		`To many requests, api account bot! max request rates is 600req/10min`:                                     60,
		`max request rates is 60req/min`:                    60,
		`max request rates is 5req/s`:                       300,
		`max request rate is 6000 requests/1 hour`:          100,
		`To many requests`:                                  -1,
		`max request rates is 0req/10min`:                   -1,
		`max request rates is 1800req/0min`:                 -1,
		`<html>429 Too Many Requests</html>`:                -1,
		`{"status":429,"info":"max request rates is lots"}`: -1,
	} {
		got, _, ok := parseQuota([]byte(body))
		if want < 0 {
			if ok {
				t.Errorf("%s: parsed %v, want nothing", body, got)
			}
			continue
		}
		if !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("%s: %v %v, want %v per minute", body, got, ok, want)
		}
	}
}

func TestLowerRateLimitSetsTheLimiter(t *testing.T) {
	c, err := New(Options{RequestsPerMinute: 600})
	if err != nil {
		t.Fatal(err)
	}
	c.lowerRateLimit(t.Context(), 180)
	if c.limiter.Limit() != 3 || c.limiter.Burst() != 3 || c.RateLimit() != 180 {
		t.Fatalf("limit %v/s burst %d, RateLimit %v; want 3/s, 3, 180", c.limiter.Limit(), c.limiter.Burst(), c.RateLimit())
	}
	c.lowerRateLimit(t.Context(), 6) // below one a second: burst stays 1
	if c.limiter.Limit() != 0.1 || c.limiter.Burst() != 1 {
		t.Fatalf("limit %v/s burst %d; want 0.1/s, 1", c.limiter.Limit(), c.limiter.Burst())
	}
	c.lowerRateLimit(t.Context(), 600)
	if c.RateLimit() != 6 {
		t.Fatalf("RateLimit %v after a higher quota, want 6 (never raised)", c.RateLimit())
	}
}

func TestRetryAfterLongerThanTheCooldownIsHonouredUpToPenaltyMax(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for retryAfter, want := range map[string]time.Duration{"": time.Minute, "10": time.Minute, "300": 5 * time.Minute, "7200": 30 * time.Minute} {
		c, _ := New(Options{Now: func() time.Time { return now }})
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		c.attempted(t.Context(), false, 0, &http.Response{StatusCode: 429, Header: h}, "")
		if got := c.PausedUntil().Sub(now); got != want {
			t.Errorf("Retry-After %q: paused %v, want %v", retryAfter, got, want)
		}
	}
}
