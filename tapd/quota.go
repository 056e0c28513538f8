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

	"golang.org/x/time/rate"
)

// quotaRE reads TAPD's 429 info, "To many requests, api account NAME! max
// request rates is 1800req/10min": a count per a number of time units.
var quotaRE = regexp.MustCompile(`(?i)max request rates? is (\d+)\s*req(?:uest)?s?\s*/\s*(\d*)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b`)

// parseQuota returns the account's rate in requests per minute from a 429
// body (JSON or not).
func parseQuota(body []byte) (perMinute float64, ok bool) {
	text := string(body)
	var env wireEnvelope
	if json.Unmarshal(body, &env) == nil && env.Info != "" {
		text = env.Info // TAPD writes "/" as "\/" in JSON
	}
	m := quotaRE.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n <= 0 {
		return 0, false
	}
	per := 1
	if m[2] != "" {
		if per, err = strconv.Atoi(m[2]); err != nil || per <= 0 {
			return 0, false
		}
	}
	minutes := float64(per)
	switch unit := strings.ToLower(m[3]); {
	case strings.HasPrefix(unit, "s"):
		minutes /= 60
	case strings.HasPrefix(unit, "h"):
		minutes *= 60
	}
	return float64(n) / minutes, true
}

// noteQuota reads a 429's body for the account's real rate and lowers the
// limiter to it; the body is left readable for the caller.
func (c *Client) noteQuota(ctx context.Context, resp *http.Response) {
	if c.limiter == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Body == nil {
		return
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10)) // 429 bodies are a line
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	if perMinute, ok := parseQuota(head); ok {
		c.lowerRateLimit(ctx, perMinute)
	}
}

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
