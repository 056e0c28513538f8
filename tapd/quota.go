package tapd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// quotaRE reads TAPD's 429 info, "To many requests, api account NAME! max
// request rates is 1800req/10min": a count per a number of time units.
var quotaRE = regexp.MustCompile(`(?i)max request rates? is (\d+)\s*req(?:uest)?s?\s*/\s*(\d*)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b`)

// parseQuota returns the account's rate in requests per minute from a 429
// body (JSON or not), and the period TAPD counts it over.
func parseQuota(body []byte) (perMinute float64, period time.Duration, ok bool) {
	text := string(body)
	var env wireEnvelope
	if json.Unmarshal(body, &env) == nil && env.Info != "" {
		text = string(env.Info) // TAPD writes "/" as "\/" in JSON
	}
	m := quotaRE.FindStringSubmatch(text)
	if m == nil {
		return 0, 0, false
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n <= 0 {
		return 0, 0, false
	}
	per := 1
	if m[2] != "" {
		if per, err = strconv.Atoi(m[2]); err != nil || per <= 0 {
			return 0, 0, false
		}
	}
	unit := time.Minute
	switch u := strings.ToLower(m[3]); {
	case strings.HasPrefix(u, "s"):
		unit = time.Second
	case strings.HasPrefix(u, "h"):
		unit = time.Hour
	}
	period = time.Duration(per) * unit
	return float64(n) / period.Minutes(), period, true
}

// noteAnswer learns what an answer says about the quota and returns TAPD's
// request id for the logs. An error's body (a line) is read for its
// meta.request_id and, on a 429, for the account's real rate, and left
// readable for the caller; a successful body is not read here.
func (c *Client) noteAnswer(ctx context.Context, resp *http.Response) (requestID string) {
	c.noteHeaders(ctx, resp.Header)
	if resp.StatusCode/100 == 2 || resp.Body == nil {
		return ""
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	var env wireEnvelope
	if json.Unmarshal(head, &env) == nil {
		requestID = env.Meta.RequestID
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		return requestID
	}
	if perMinute, period, ok := parseQuota(head); ok {
		c.rateMu.Lock()
		c.quotaWindow = period
		c.rateMu.Unlock()
		if c.limiter != nil {
			c.lowerRateLimit(ctx, perMinute)
		}
	}
	return requestID
}

// noteHeaders paces on X-RateLimit-Limit / X-RateLimit-Remaining, which
// TAPD sends on some answers: when only the reserve of a quota window is
// left, every request waits for the window to end (X-RateLimit-Reset when
// sent, else the period named by a 429's text, else a minute, TAPD's
// documented unit), so the last requests are never spent and no 429 is
// earned. The limit, read over that period, lowers the limiter like a 429's
// text does.
func (c *Client) noteHeaders(ctx context.Context, h http.Header) {
	limit, err1 := strconv.Atoi(strings.TrimSpace(h.Get("X-RateLimit-Limit")))
	remaining, err2 := strconv.Atoi(strings.TrimSpace(h.Get("X-RateLimit-Remaining")))
	if err1 != nil || err2 != nil || limit <= 0 {
		return
	}
	now := c.opts.Now()
	low := remaining <= quotaReserve(limit)
	g := &c.gate
	c.rateMu.Lock()
	g.mu.Lock()
	if g.refillCheck && !now.Before(g.windowUntil) {
		// The first answer after waiting out a window: if it has not
		// refilled, TAPD's window is longer than assumed.
		g.refillCheck = false
		if low && c.quotaWindow < time.Hour {
			c.quotaWindow = max(c.quotaWindow, time.Minute) * 2
		}
	}
	g.mu.Unlock()
	window := c.quotaWindow
	c.rateMu.Unlock()
	if window == 0 {
		window = time.Minute
	}
	end := now.Add(window)
	if reset, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-RateLimit-Reset")), 10, 64); err == nil && reset >= 0 {
		if reset > 1e9 { // an epoch second rather than seconds from now
			end = time.Unix(reset, 0)
		} else {
			end = now.Add(time.Duration(reset) * time.Second)
		}
	}
	if c.limiter != nil {
		c.lowerRateLimit(ctx, float64(limit)/window.Minutes())
	}
	if !low || !end.After(now) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if end.After(g.windowUntil) {
		g.refillCheck = true
		if !g.windowUntil.After(now) { // once per window
			c.log.InfoContext(ctx, "TAPD's quota window is nearly spent; waiting for the next one",
				"limit", limit, "remaining", remaining, "until", end.In(c.opts.Location).Format(time.DateTime))
		}
		g.windowUntil = end
	}
}

// quotaReserve is how many requests of a quota window are left unspent:
// enough for the requests already in flight when the count arrives.
func quotaReserve(limit int) int { return max(2, limit/50) }

// lowerRateLimit sets the limiter to perMinute if that is lower than the
// limit in use; it never raises it, so never above RequestsPerMinute.
func (c *Client) lowerRateLimit(ctx context.Context, perMinute float64) {
	c.rateMu.Lock()
	old := c.perMinute
	if perMinute >= old {
		c.rateMu.Unlock()
		return
	}
	c.perMinute = perMinute
	perSec := perMinute / 60
	c.limiter.SetLimit(rate.Limit(perSec))
	c.limiter.SetBurst(max(1, int(perSec)))
	c.rateMu.Unlock()
	// Once per change; the account name in TAPD's message is left out.
	c.log.WarnContext(ctx, "TAPD's quota for this API account is below the client-side limit; lowering it",
		"configured_per_minute", c.opts.RequestsPerMinute, "previous_per_minute", old, "quota_per_minute", perMinute)
}

// RateLimit is the client-side limit in use, in requests per minute:
// RequestsPerMinute, or the lower quota TAPD announced in a 429. 0 means
// the limiter is off.
func (c *Client) RateLimit() float64 {
	if c.limiter == nil {
		return 0
	}
	c.rateMu.Lock()
	defer c.rateMu.Unlock()
	return c.perMinute
}
