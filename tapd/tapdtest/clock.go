package tapdtest

import (
	"context"
	"sync"
	"time"
)

// VirtualClock is a clock for a client under test that jumps to whatever
// instant it is asked to wait for (tapd.Options.Now and WaitUntil), so a
// quota pause of minutes passes at once without moving the fake's own
// clock (and horizon). To move both together, use Server.WaitUntil.
type VirtualClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewVirtualClock starts a clock at start.
func NewVirtualClock(start time.Time) *VirtualClock { return &VirtualClock{now: start} }

// Now is the clock's time.
func (c *VirtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// WaitUntil moves the clock to t (never back) and returns at once.
func (c *VirtualClock) WaitUntil(ctx context.Context, t time.Time) error {
	c.mu.Lock()
	if t.After(c.now) {
		c.now = t
	}
	c.mu.Unlock()
	return ctx.Err()
}
