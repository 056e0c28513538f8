package syncer

import (
	"context"
	"slices"
	"sync"
	"time"
)

// deadlinePool hands out the run slots earliest deadline first. A run's
// deadline is the start of the next window it will fetch when that is
// within a day of the horizon (urgent: see Syncer.urgency), else notUrgent:
// TAPD time expires oldest first, so the window that starts earliest is the
// one whose records leave TAPD's half year first, whichever target it
// belongs to. Ties go in arrival order.
type deadlinePool struct {
	mu      sync.Mutex
	free    int
	waiters []*slotWaiter // sorted by deadline, then arrival
	arrived int64
}

type slotWaiter struct {
	deadline time.Time
	order    int64
	granted  chan struct{}
}

func newDeadlinePool(slots int) *deadlinePool { return &deadlinePool{free: slots} }

// acquire waits for a slot; a slot freed goes to the waiter with the
// earliest deadline.
func (p *deadlinePool) acquire(ctx context.Context, deadline time.Time) error {
	p.mu.Lock()
	if p.free > 0 {
		p.free--
		p.mu.Unlock()
		return nil
	}
	p.arrived++
	w := &slotWaiter{deadline: deadline, order: p.arrived, granted: make(chan struct{})}
	at, _ := slices.BinarySearchFunc(p.waiters, w, func(a, b *slotWaiter) int {
		if c := a.deadline.Compare(b.deadline); c != 0 {
			return c
		}
		return int(a.order - b.order)
	})
	p.waiters = slices.Insert(p.waiters, at, w)
	p.mu.Unlock()
	select {
	case <-w.granted:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		if i := slices.Index(p.waiters, w); i >= 0 {
			p.waiters = slices.Delete(p.waiters, i, i+1)
			p.mu.Unlock()
			return context.Cause(ctx)
		}
		p.mu.Unlock()
		p.release() // granted meanwhile: pass it on
		return context.Cause(ctx)
	}
}

// release frees a slot, handing it straight to the most urgent waiter.
func (p *deadlinePool) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.waiters) == 0 {
		p.free++
		return
	}
	w := p.waiters[0]
	p.waiters = p.waiters[1:]
	close(w.granted)
}

// notUrgent is the deadline of work whose records are far from expiring:
// such runs queue in arrival order behind every urgent one, and take turns
// window by window.
var notUrgent = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// shouldYield reports whether a run whose next window has deadline d
// should give its slot to a waiter: one more urgent waits, or the run is
// not urgent and anyone waits (turns by window, so an incremental run never
// waits for a whole backfill).
func (p *deadlinePool) shouldYield(d time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiters) > 0 && (p.waiters[0].deadline.Before(d) || d.Equal(notUrgent))
}
