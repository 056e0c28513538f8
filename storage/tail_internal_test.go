package storage

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tapd-mirror/tapd-mirror/integrity"
)

func tailEvents(t *testing.T, users ...string) encodedEvents {
	t.Helper()
	var evs []integrity.Event
	for i, u := range users {
		evs = append(evs, integrity.RecordEvent(integrity.Record{ID: int64(i + 1), Platform: "p", ActionType: "a", Username: u,
			Timestamp: time.Unix(1, 0).UTC(), Source: "tapd", SourceID: fmt.Sprint(i), IngestedAt: time.Unix(2, 0).UTC(), Extra: map[string]string{}}))
	}
	enc, err := encodeEvents(evs)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// A committed at the database, then a purge P withheld A's record and
// committed, and P's outcome was told before A's: A's events must not be
// served (they were appended under the generation P moved past).
func TestTailDropsWhatAPurgeOvertook(t *testing.T) {
	tl := logTail{keep: 100}
	a, p := &sqlx.Tx{}, &sqlx.Tx{}
	tl.appended(a, LogHead{Size: 0, withheld: 0}, tailEvents(t, "alice"))
	pp := tl.pendingOf(p)
	pp.forget, pp.newGen = true, 1
	tl.ended(p, true)
	tl.ended(a, true)
	if evs, ok := tl.read(1, 0, 1); ok {
		t.Fatalf("the tail serves event 0 (%s) appended before the purge that withheld it", evs[0].Event.Record.Username)
	}
	// A later transaction under the new generation is served.
	b := &sqlx.Tx{}
	tl.appended(b, LogHead{Size: 1, withheld: 1}, tailEvents(t, "bob"))
	tl.ended(b, true)
	if evs, ok := tl.read(1, 1, 2); !ok || evs[0].Event.Record.Username != "bob" {
		t.Fatalf("event 1 after the purge: %v %v", evs, ok)
	}
	// A reader whose head shows a newer generation (another process
	// purged) is not served, and the tail empties.
	tl.observe(LogHead{Size: 2, withheld: 2})
	if _, ok := tl.read(2, 1, 2); ok {
		t.Fatal("served after another process's purge")
	}
}

// An asynchronous failover lost events 1 and 2; the next commit writes
// others at those indexes: from its append on, the lost ones are gone.
func TestTailForgetsALostEnd(t *testing.T) {
	tl := logTail{keep: 100}
	a, b := &sqlx.Tx{}, &sqlx.Tx{}
	tl.appended(a, LogHead{Size: 0}, tailEvents(t, "x", "lost1", "lost2"))
	tl.ended(a, true)
	tl.observe(LogHead{Size: 1}) // the new primary's head
	if tl.end != 1 {
		t.Fatalf("end %d after the log shrank to 1: waits would never wait", tl.end)
	}
	tl.appended(b, LogHead{Size: 1}, tailEvents(t, "new1", "new2"))
	if evs, ok := tl.read(0, 1, 3); ok {
		t.Fatalf("index 1 reads %q while the database holds new1 there", evs[0].Event.Record.Username)
	}
	tl.ended(b, true)
	if evs, ok := tl.read(0, 1, 3); !ok || evs[0].Event.Record.Username != "new1" {
		t.Fatalf("after the commit: %v %v", evs, ok)
	}
}

// A transaction that panics leaves nothing pending.
func TestTailPanicLeavesNothingPending(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, "sqlite:"+t.TempDir()+"/panic.db")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.KeepRecentEvents(10)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		s.inTx(ctx, "panicking", func(tx *sqlx.Tx) error { //nolint:errcheck // it panics
			s.tail.appended(tx, LogHead{}, tailEvents(t, "x"))
			panic("boom")
		})
	}()
	if len(s.tail.pending) != 0 {
		t.Fatalf("%d transactions pending after a panic", len(s.tail.pending))
	}
}
