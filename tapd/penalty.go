package tapd

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// firstCooldown is the pause after a first 429; each further refusal in a
// row doubles it, up to Options.PenaltyMax.
const firstCooldown = time.Minute

// gate holds back every request of the client while TAPD's quota says no.
// TAPD penalises an API account for minutes after it exceeds its quota
// (every target of the mirror shares that account), so a 429 pauses the
// whole client: nothing is sent until the cool-down ends, then one request
// probes whether the penalty is over while the others wait for its answer.
// A refused probe doubles the cool-down; any answer that is not a 429 ends
// the penalty. The gate also holds requests while the quota window TAPD's
// X-RateLimit-Remaining counts is nearly spent (see noteHeaders).
type gate struct {
	mu      sync.Mutex
	until   time.Time     // penalty: nothing is sent before it
	since   time.Time     // when the current penalty began
	level   int           // refusals in a row; > 0 while penalised
	epoch   int           // counts refusals: an answer to a request sent before the latest speaks for an older state
	probing bool          // the one request testing whether the penalty is over is out
	changed chan struct{} // closed and replaced whenever the above change

	windowUntil time.Time // the quota window is nearly spent until then
	refillCheck bool      // the first answer after windowUntil tells whether the window refilled
}

// broadcastLocked wakes every waiter.
func (g *gate) broadcastLocked() {
	if g.changed != nil {
		close(g.changed)
	}
	g.changed = make(chan struct{})
}

// awaitTurn blocks until a request may be sent, or ctx ends. probe says
// that this request tests whether a penalty is over; epoch is the gate's
// state it is sent in. Both go to attempted with its answer.
func (c *Client) awaitTurn(ctx context.Context) (probe bool, epoch int, err error) {
	g := &c.gate
	for {
		g.mu.Lock()
		if g.changed == nil {
			g.changed = make(chan struct{})
		}
		now := c.opts.Now()
		until := g.until
		if g.windowUntil.After(until) {
			until = g.windowUntil
		}
		changed, probing := g.changed, g.probing
		if !now.Before(until) && !probing {
			probe, epoch = g.level > 0, g.epoch
			g.probing = probe
			g.mu.Unlock()
			return probe, epoch, nil
		}
		g.mu.Unlock()
		if probing && !now.Before(until) {
			select { // the probe's answer decides
			case <-changed:
				continue
			case <-ctx.Done():
				return false, 0, ctx.Err()
			}
		}
		// A pause only ever grows while it lasts, so waking at its end
		// (then looking again) is enough.
		if err := c.opts.WaitUntil(ctx, until); err != nil {
			return false, 0, err
		}
	}
}

// attempted records the answer to a request sent in epoch (resp is nil on
// a network error): a 429 starts or lengthens the penalty, any other answer
// ends it — unless the request was sent before the latest refusal, when it
// says nothing new.
func (c *Client) attempted(ctx context.Context, probe bool, epoch int, resp *http.Response, requestID string) {
	g := &c.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if probe {
		g.probing = false
		defer g.broadcastLocked()
	}
	now := c.opts.Now()
	switch {
	case resp == nil:
		// No answer says nothing about the quota; the next request probes.
	case resp.StatusCode == http.StatusTooManyRequests:
		after, hasAfter := retryAfter(resp.Header.Get("Retry-After"), now)
		if epoch < g.epoch {
			// Sent before this penalty began: the same refusal, not a new one.
			if hasAfter && now.Add(min(after, c.opts.PenaltyMax)).After(g.until) {
				g.until = now.Add(min(after, c.opts.PenaltyMax))
			}
			return
		}
		cooldown := min(firstCooldown<<min(g.level, 20), c.opts.PenaltyMax)
		if hasAfter && after > cooldown {
			cooldown = min(after, c.opts.PenaltyMax) // TAPD's own word, when it asks for longer
		}
		g.level++
		g.epoch++
		g.since, g.until = now, now.Add(cooldown)
		attrs := []any{"paused_until", g.until.In(c.opts.Location).Format(time.DateTime), "cooldown", cooldown, "refusals_in_a_row", g.level}
		if requestID != "" {
			attrs = append(attrs, "request_id", requestID)
		}
		c.log.WarnContext(ctx, "TAPD quota exceeded: every request paused", attrs...)
		if !probe {
			g.broadcastLocked()
		}
	case g.level > 0 && epoch == g.epoch:
		c.log.InfoContext(ctx, "TAPD quota penalty over; requests resume", "paused_since", g.since.In(c.opts.Location).Format(time.DateTime))
		g.level, g.until = 0, time.Time{}
		if !probe {
			g.broadcastLocked()
		}
	}
}

// PausedUntil is when the current quota penalty ends: requests wait until
// then (and for one probe after it). It is the zero time when TAPD is not
// refusing this client.
func (c *Client) PausedUntil() time.Time {
	c.gate.mu.Lock()
	defer c.gate.mu.Unlock()
	if c.gate.level == 0 {
		return time.Time{}
	}
	return c.gate.until
}

// pausedErr says, for a call stopped while waiting, that it was waiting on
// TAPD's quota.
func (c *Client) pausedErr(op string, err error) error {
	if until := c.PausedUntil(); !until.IsZero() {
		return fmt.Errorf("%s: stopped while TAPD's quota penalty paused requests until %s: %w",
			op, until.In(c.opts.Location).Format(time.DateTime), err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// waitUntil is the default Options.WaitUntil: a timer against the client's clock.
func waitUntil(now func() time.Time) func(context.Context, time.Time) error {
	return func(ctx context.Context, t time.Time) error {
		d := t.Sub(now())
		if d <= 0 {
			return ctx.Err()
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
