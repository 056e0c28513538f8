package storage_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// sameEvents fails unless got and want are the same log events with the
// same content.
func sameEvents(t *testing.T, what string, got, want []storage.LoggedEvent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d", what, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Index != w.Index || g.Kind != w.Kind || g.RecordID != w.RecordID || g.Leaf != w.Leaf || (g.Event == nil) != (w.Event == nil) {
			t.Fatalf("%s: event %d is %+v, want %+v", what, i, g, w)
		}
		if g.Event == nil {
			continue
		}
		gb, err := integrity.EncodeEvent(*g.Event)
		if err != nil {
			t.Fatal(err)
		}
		wb, err := integrity.EncodeEvent(*w.Event)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(gb, wb) {
			t.Fatalf("%s: event %d reads\n%s\nwant\n%s", what, g.Index, gb, wb)
		}
	}
}

// The recent events a consumer reads from memory are the committed log's,
// as the database gives them: failed writes leave nothing, a purge's
// withheld content is withheld, and only the last n are kept.
func TestRecentEventsAreTheCommittedLog(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, db := storagetest.Open(t, url), storagetest.Open(t, url) // db: no tail, every read a query
		const keep = 6
		s.KeepRecentEvents(keep)
		read := func(st *storage.Store, from, to int64) []storage.LoggedEvent {
			t.Helper()
			evs, err := st.ReadEvents(ctx, from, to)
			if err != nil {
				t.Fatal(err)
			}
			return evs
		}
		size := func() int64 {
			t.Helper()
			h, err := s.Head(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return h.Size
		}
		old := t0.Add(-1000 * time.Hour)
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("1", old, "a"), mirrored("2", t0, "b"), mirrored("3", t0, "c")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("2", t0, "b, renamed")}); err != nil { // an update event
			t.Fatal(err)
		}
		// Failed writes: their events must not be served for the indexes the
		// next writes take.
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("4", t0, "d"), mirrored("", t0, "no id")}); err == nil {
			t.Fatal("a record without source_id was accepted")
		}
		id, err := s.InsertActivity(ctx, storage.Activity{Platform: "p", ActionType: "x", Username: "u", Timestamp: t0})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.DeleteActivity(ctx, id); err != nil { // a delete event
			t.Fatal(err)
		}
		n := size()
		if n != 6 {
			t.Fatalf("log of %d events, want 6", n)
		}
		sameEvents(t, "the whole log", read(s, 0, n), read(db, 0, n))
		sameEvents(t, "its middle", read(s, 2, 5), read(db, 2, 5))

		// A row changed behind the service's back: the database read shows
		// the change, the recent events what was logged. Events older than
		// the last keep come from the database.
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("5", t0, "e"), mirrored("6", t0, "f")}); err != nil {
			t.Fatal(err)
		}
		exec(t, s, `UPDATE activity_log SET username = 'mallory' WHERE source_id = '6'`)
		exec(t, s, `UPDATE activity_log SET username = 'mallory' WHERE source_id = '1'`)
		n = size()
		last := read(s, n-1, n)[0]
		if last.Event == nil || last.Event.Record == nil || last.Event.Record.Username != "啊啊啊" {
			t.Fatalf("the last event read %+v, want record 6 as logged", last.Event)
		}
		if got := read(db, n-1, n)[0].Event.Record.Username; got != "mallory" {
			t.Fatalf("the database read gives %q: the test's tampering did not happen", got)
		}
		if got := read(s, 0, 1)[0].Event.Record.Username; got != "mallory" {
			t.Fatalf("event 0, older than the last %d, read %q: want the database's row (mallory)", keep, got)
		}
		exec(t, s, `UPDATE activity_log SET username = '啊啊啊' WHERE source_id IN ('1', '6')`)

		// A purge withholds the content of records 1 and 7 (a recent event
		// of an old record): no reader sees it again.
		at7 := size()
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("7", old, "g")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Purge(ctx, storage.SourceTAPD, old.Add(time.Hour), "test: older than old"); err != nil {
			t.Fatal(err)
		}
		n = size()
		sameEvents(t, "after the purge", read(s, 0, n), read(db, 0, n))
		if got := read(s, at7, at7+1)[0]; got.Event != nil {
			t.Fatalf("record 7's event after the purge: %+v, want withheld", got.Event)
		}
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("8", t0, "h")}); err != nil {
			t.Fatal(err)
		}
		n = size()
		sameEvents(t, "after the purge and a write", read(s, n-keep, n), read(db, n-keep, n))
	})
}

// A consumer waiting for new events is woken by this process's commit,
// not by its poll; a cancelled wait says so.
func TestWaitForEventsWakesOnCommit(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		s.KeepRecentEvents(100)
		if !s.WaitForEvents(ctx, 0, time.Hour) {
			t.Fatal("waiting for a size the log has did not return at once")
		}
		woken := make(chan bool)
		go func() { woken <- s.WaitForEvents(ctx, 2, time.Hour) }()
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("1", t0, "a")}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-woken:
			t.Fatal("woken with 1 event committed, waiting for 2")
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("2", t0, "b")}); err != nil {
			t.Fatal(err)
		}
		select {
		case ok := <-woken:
			if !ok {
				t.Fatal("the wait reported a cancelled context")
			}
		case <-time.After(time.Minute):
			t.Fatal("a commit did not wake the wait (poll of an hour)")
		}
		cctx, cancel := context.WithCancel(ctx)
		go func() { woken <- s.WaitForEvents(cctx, 100, time.Hour) }()
		cancel()
		if <-woken {
			t.Fatal("a cancelled wait returned true")
		}
	})
}

// Another process's purge: this process's recent events are not served
// with the content it withheld (the head's withholding generation moved).
func TestRecentEventsSeeAnotherProcesssPurge(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, other := storagetest.Open(t, url), storagetest.Open(t, url)
		s.KeepRecentEvents(100)
		old := t0.Add(-1000 * time.Hour)
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("1", old, "a"), mirrored("2", t0, "b")}); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Purge(ctx, storage.SourceTAPD, old.Add(time.Hour), "test: another process's retention"); err != nil {
			t.Fatal(err)
		}
		evs, err := s.ReadEvents(ctx, 0, 2)
		if err != nil {
			t.Fatal(err)
		}
		if evs[0].Event != nil {
			t.Fatalf("record 1's event after another process purged it: %+v, want withheld", evs[0].Event.Record)
		}
		if evs[1].Event == nil || evs[1].Event.Record.SourceID != "2" {
			t.Fatalf("record 2's event: %+v", evs[1].Event)
		}
	})
}

// The access event kept in memory is what was logged: the caller's
// entry changing afterwards (the API notes a late failure in Params) does
// not show, nor race with a forwarder encoding it.
func TestRecentAccessEventIsWhatWasLogged(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		s.KeepRecentEvents(100)
		e := &storage.AccessEntry{Principal: "token:ci", Action: "export", Params: map[string]string{"q": "x"}}
		if err := s.AppendAccess(ctx, e); err != nil {
			t.Fatal(err)
		}
		e.Params["status"] = "500"
		evs, err := s.ReadEvents(ctx, e.LogIndex, e.LogIndex+1)
		if err != nil {
			t.Fatal(err)
		}
		if got := evs[0].Event.Access.Params; len(got) != 1 || got["q"] != "x" {
			t.Fatalf("the logged access event reads params %v, want {q: x}", got)
		}
	})
}
