package syncer

import (
	"context"
	"testing"
	"time"
)

// TestDeadlinePoolServesEarliestDeadlineFirst: freed slots go to the
// waiter whose window expires first, whatever the arrival order; a waiter
// that gives up leaves the queue; an urgent run yields only to a more urgent
// waiter, a not-urgent one to anyone.
func TestDeadlinePoolServesEarliestDeadlineFirst(t *testing.T) {
	p := newDeadlinePool(2)
	ctx := context.Background()
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for range 2 {
		if err := p.acquire(ctx, notUrgent); err != nil {
			t.Fatal(err)
		}
	}
	order := make(chan time.Time, 4)
	queued := func(n int) {
		for {
			p.mu.Lock()
			got := len(p.waiters)
			p.mu.Unlock()
			if got == n {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	wait := func(d time.Time) {
		go func() {
			if err := p.acquire(ctx, d); err == nil {
				order <- d
			}
		}()
	}
	gaveUp, cancel := context.WithCancel(ctx)
	go p.acquire(gaveUp, t0.Add(-time.Hour)) //nolint:errcheck // canceled below
	queued(1)
	wait(notUrgent) // arrival order is the opposite of the deadlines'
	queued(2)
	wait(t0.Add(2 * time.Hour))
	queued(3)
	wait(t0)
	queued(4)
	cancel()
	if !p.shouldYield(t0.Add(time.Hour)) || p.shouldYield(t0.Add(-2*time.Hour)) || !p.shouldYield(notUrgent) {
		t.Fatal("shouldYield: an urgent run yields only to a more urgent waiter, a not-urgent one to anyone")
	}
	for _, want := range []time.Time{t0, t0.Add(2 * time.Hour), notUrgent} {
		p.release()
		if got := <-order; !got.Equal(want) {
			t.Fatalf("slot went to deadline %v, want %v", got, want)
		}
	}
}
