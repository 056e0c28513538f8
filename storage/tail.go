package storage

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
)

// logTail keeps the log's most recent events in memory, as they were
// appended, for the consumers that follow the log's head (forwarding
// destinations, alert rules): while they keep up, ReadEvents serves them
// without a query and without decoding each record again. Off (keep 0)
// until a consumer asks (KeepRecentEvents).
//
// What it holds is what the database would give:
//   - only committed events: a transaction's wait in pending until its
//     COMMIT succeeded, and are dropped otherwise;
//   - never content withheld since: every transaction that withholds
//     logged content (a purge, expired access entries, a restore) adds one
//     to the log's withholding generation (integrity_state.withheld, in
//     the same transaction). Each event is kept with the generation its
//     transaction read under the log's lock; the tail holds one generation
//     at a time, and a head read (every ReadEvents reads one) that shows a
//     newer generation — another process's purge included — empties it.
//   - never a lost index: appending at an index the tail holds (the log
//     lost its end in an asynchronous failover) empties it first.
type logTail struct {
	mu      sync.Mutex
	keep    int
	gen     int64         // the withholding generation of events
	start   int64         // the index of events[0]
	events  []LoggedEvent // contiguous: start, start+1, …
	pending map[*sqlx.Tx]*tailPending
	// end is the log's size after the last transaction of this process
	// that appended (tail emptied or not), for WaitForEvents; grew is
	// closed when it moves.
	end  int64
	grew chan struct{}
}

type tailPending struct {
	events []LoggedEvent
	gen    int64 // the withholding generation the transaction appended under
	// forget: the transaction withholds logged content; newGen is the
	// generation it moved the log to.
	forget bool
	newGen int64
}

// RecentEvents is how many of the log's last events the consumers that
// follow it ask to be kept (KeepRecentEvents): a second of a fast backfill
// on loopback, several of one from the real TAPD.
const RecentEvents = 16384

// KeepRecentEvents makes the store keep at least the log's last n
// appended events in memory for ReadEvents (consumers of the log call it;
// the largest ask wins). Memory: about 2 KiB per TAPD record event.
func (s *Store) KeepRecentEvents(n int) {
	s.tail.mu.Lock()
	defer s.tail.mu.Unlock()
	s.tail.keep = max(s.tail.keep, n)
}

// kept reports whether the tail is on.
func (t *logTail) kept() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.keep > 0
}

// appended notes the events tx appends at the end of the log whose locked
// head is head; they are served once tx commits (ended). enc's events must
// not change afterwards.
func (t *logTail) appended(tx *sqlx.Tx, head LogHead, enc encodedEvents) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.keep == 0 {
		return
	}
	first := head.Size
	if first < t.start+int64(len(t.events)) {
		// The tail holds this index already: the log lost its end since
		// (an asynchronous failover). Forgotten before this COMMIT shows.
		t.events, t.end = nil, first
	}
	p := t.pendingOf(tx)
	if len(p.events) > 0 && p.events[len(p.events)-1].Index+1 != first {
		p.events = nil // not contiguous (never so today): keep the last run
	}
	p.gen = head.withheld
	for i := range enc.events {
		e := &enc.events[i]
		p.events = append(p.events, LoggedEvent{Index: first + int64(i), Kind: e.Kind, RecordID: e.Subject(), Event: e, Leaf: enc.leaves[i]})
	}
	if over := len(p.events) - t.keep; over > 0 { // a restore's one transaction
		p.events = p.events[over:]
	}
}

// withholding records that tx withholds logged content: it moves the log's
// withholding generation, and the tail forgets what it holds when tx
// commits. Call it in tx before (or after) the statements that withhold.
func (s *Store) withholding(ctx context.Context, tx *sqlx.Tx) error {
	var gen int64
	if err := tx.QueryRowxContext(ctx, `UPDATE integrity_state SET withheld = withheld + 1 WHERE id = 1 RETURNING withheld`).Scan(&gen); err != nil {
		return fmt.Errorf("moving the integrity log's withholding generation: %w", err)
	}
	t := &s.tail
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pendingOf(tx)
	p.forget, p.newGen = true, max(p.newGen, gen)
	return nil
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
	switch {
	case p.forget:
		// Its own events too: a restore withholds some it appends.
		t.newGeneration(p.newGen)
		return
	case len(p.events) == 0 || p.gen < t.gen:
		// Appended before a withholding that committed first (its COMMIT
		// returned later): its content may be withheld now.
		return
	case p.gen > t.gen:
		t.newGeneration(p.gen)
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

// newGeneration empties the tail for generation gen, if newer; needs t.mu.
func (t *logTail) newGeneration(gen int64) {
	if gen > t.gen {
		t.gen, t.events = gen, nil
	}
}

// observe takes a head read from the database: a newer withholding
// generation empties the tail; a smaller log lowers end (a lost end: else
// WaitForEvents would never wait). A head read before a commit this
// process just published only makes a wait end at the next commit.
func (t *logTail) observe(h LogHead) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.newGeneration(h.withheld)
	t.end = min(t.end, h.Size)
}

// read returns events [from, to) when the tail holds all of them for a
// reader whose head showed generation gen. The events are shared: callers
// must not change them.
func (t *logTail) read(gen, from, to int64) ([]LoggedEvent, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if gen > t.gen || len(t.events) == 0 || from < t.start || to > t.start+int64(len(t.events)) || from >= to {
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
