package storage

import (
	"context"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
)

// logTail keeps the log's most recent events in memory, as they were
// appended, for the consumers that follow the log's head (forwarding
// destinations, alert rules): while they keep up, ReadEvents serves them
// without a query and without decoding each record again. It holds only
// committed events: a transaction's events wait in pending until its
// COMMIT succeeds. Off (keep 0) until a consumer asks (KeepRecentEvents).
type logTail struct {
	mu      sync.Mutex
	keep    int
	start   int64         // the index of events[0]
	events  []LoggedEvent // contiguous: start, start+1, …
	pending map[*sqlx.Tx]*tailPending
	// end is the log's size after the last transaction of this process
	// that appended (tails emptied or not); grew is closed when it moves.
	end  int64
	grew chan struct{}
}

type tailPending struct {
	events []LoggedEvent
	// forget: the transaction withholds logged content (a purge, expired
	// access entries, a restore's withheld events).
	forget bool
}

// RecentEvents is how many of the log's last events the consumers that
// follow it ask to be kept (KeepRecentEvents): a second of a fast backfill
// on loopback, several of one from the real TAPD.
const RecentEvents = 16384

// KeepRecentEvents makes the store keep at least the log's last n
// appended events in memory for ReadEvents (consumers of the log call it;
// the largest ask wins). Memory: about 1.2 KiB per TAPD record event.
func (s *Store) KeepRecentEvents(n int) {
	s.tail.mu.Lock()
	defer s.tail.mu.Unlock()
	s.tail.keep = max(s.tail.keep, n)
}

// appended notes the events tx appends at index first; they are served
// once tx commits (ended). enc's events must not change afterwards.
func (t *logTail) appended(tx *sqlx.Tx, first int64, enc encodedEvents) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.keep == 0 {
		return
	}
	p := t.pendingOf(tx)
	if len(p.events) > 0 && p.events[len(p.events)-1].Index+1 != first {
		p.events = nil // not contiguous (never so today): keep the last run
	}
	for i := range enc.events {
		e := &enc.events[i]
		p.events = append(p.events, LoggedEvent{Index: first + int64(i), Kind: e.Kind, RecordID: e.Subject(), Event: e, Leaf: enc.leaves[i]})
	}
}

// withholds notes that tx withholds logged content: the tail is emptied
// when it commits.
func (t *logTail) withholds(tx *sqlx.Tx) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.keep > 0 {
		t.pendingOf(tx).forget = true
	}
}

// pendingOf needs t.mu.
func (t *logTail) pendingOf(tx *sqlx.Tx) *tailPending {
	if t.pending == nil {
		t.pending = map[*sqlx.Tx]*tailPending{}
	}
	p := t.pending[tx]
	if p == nil {
		p = &tailPending{}
		t.pending[tx] = p
	}
	return p
}

// ended is told the outcome of tx: committed, its events join the tail;
// otherwise they are dropped.
func (t *logTail) ended(tx *sqlx.Tx, committed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.pending[tx]
	if !ok {
		return
	}
	delete(t.pending, tx)
	if !committed {
		return
	}
	if n := len(p.events); n > 0 && p.events[n-1].Index+1 > t.end {
		t.end = p.events[n-1].Index + 1
		if t.grew != nil {
			close(t.grew)
			t.grew = nil
		}
	}
	if p.forget || len(p.events) == 0 {
		// What the tail holds, or this transaction's own events (a restore
		// withholds some it appends), may be content that is gone now.
		if p.forget {
			t.events = nil
		}
		return
	}
	if first := p.events[0].Index; len(t.events) == 0 || first != t.start+int64(len(t.events)) {
		// A gap (an earlier transaction's COMMIT returned later, or the tail
		// was emptied): start again here; ReadEvents reads older ranges from
		// the database.
		t.events, t.start = nil, first
	}
	t.events = append(t.events, p.events...)
	if over := len(t.events) - t.keep; over > 0 {
		// The oldest go; append's next growth copies only the kept ones.
		t.events, t.start = t.events[over:], t.start+int64(over)
	}
}

// read returns events [from, to) when the tail holds all of them. The
// events are shared: callers must not change them.
func (t *logTail) read(from, to int64) ([]LoggedEvent, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.events) == 0 || from < t.start || to > t.start+int64(len(t.events)) || from >= to {
		return nil, false
	}
	return append([]LoggedEvent(nil), t.events[from-t.start:to-t.start]...), true
}

// WaitForEvents returns once this process has committed events up to
// size (the log holds at least size events), or d has passed: a consumer
// that caught up waits here for a batch worth reading instead of polling
// (writes of other processes are seen when d passes). False: ctx ended.
// Only a store keeping recent events (KeepRecentEvents) is woken early.
func (s *Store) WaitForEvents(ctx context.Context, size int64, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		t := &s.tail
		t.mu.Lock()
		if t.end >= size {
			t.mu.Unlock()
			return true
		}
		if t.grew == nil {
			t.grew = make(chan struct{})
		}
		grew := t.grew
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-grew:
		}
	}
}
