package storage_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// trail appends a few entries: two reads by alice and one by bob.
func trail(t *testing.T, s *storage.Store) []*storage.AccessEntry {
	t.Helper()
	es := []*storage.AccessEntry{
		{At: t0, Principal: "alice", SourceIP: "10.0.0.1", Action: "export", Params: map[string]string{"format": "csv"}, Rows: 40, Outcome: storage.AccessOK},
		{At: t0.Add(time.Hour), Principal: "bob", SourceIP: "10.0.0.2", ForwardedFor: "203.0.113.9", Action: "list.detail", Rows: 3, Outcome: storage.AccessOK},
		{At: t0.Add(2 * time.Hour), Principal: "alice", SourceIP: "10.0.0.1", Action: "export", Params: map[string]string{"status": "403"}, Outcome: storage.AccessDenied},
	}
	if err := s.AppendAccess(context.Background(), es...); err != nil {
		t.Fatal(err)
	}
	return es
}

func TestAccessTrailIsListedAndLogged(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		es := trail(t, s)
		evs := events(t, s)
		if kinds(evs) != "access,access,access" {
			t.Fatalf("events %s", kinds(evs))
		}
		for i, e := range es {
			if e.ID == 0 || e.LogIndex != int64(i) {
				t.Fatalf("entry %d: id %d log index %d", i, e.ID, e.LogIndex)
			}
		}
		all, err := s.ListAccess(ctx, storage.AccessFilter{}, 10, 0)
		if err != nil || len(all) != 3 {
			t.Fatalf("list: %d %v", len(all), err)
		}
		if got := all[1]; got.ForwardedFor != "203.0.113.9" || got.Rows != 3 || !got.At.Equal(t0.Add(time.Hour)) || got.Principal != "bob" {
			t.Errorf("entry read back as %+v", got)
		}
		if !maps.Equal(all[0].Params, map[string]string{"format": "csv"}) {
			t.Errorf("params %v", all[0].Params)
		}
		alice, _ := s.ListAccess(ctx, storage.AccessFilter{Principal: "alice"}, 10, 0)
		page, _ := s.ListAccess(ctx, storage.AccessFilter{Principal: "alice"}, 1, alice[0].ID)
		newest, _ := s.ListAccess(ctx, storage.AccessFilter{Newest: true}, 2, 0)
		older, _ := s.ListAccess(ctx, storage.AccessFilter{Newest: true}, 2, newest[1].ID)
		ranged, _ := s.ListAccess(ctx, storage.AccessFilter{Action: "export", From: t0.Add(time.Minute), To: t0.Add(3 * time.Hour)}, 10, 0)
		switch {
		case len(alice) != 2 || alice[1].Outcome != storage.AccessDenied:
			t.Errorf("alice: %+v", alice)
		case len(page) != 1 || page[0].ID != alice[1].ID:
			t.Errorf("alice's second page: %+v", page)
		case len(newest) != 2 || newest[0].ID != es[2].ID || len(older) != 1 || older[0].ID != es[0].ID:
			t.Errorf("newest first: %+v then %+v", newest, older)
		case len(ranged) != 1 || ranged[0].ID != es[2].ID:
			t.Errorf("export from t0+1m: %+v", ranged)
		}
		verifyOK(t, s, "")
	})
}

func TestAChangeRecordsItsAccessInItsTransaction(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		e := &storage.AccessEntry{Principal: "ops", SourceIP: "127.0.0.1", Action: "hold.place", Params: map[string]string{"name": "case-1"}}
		h, err := s.CreateHold(storage.WithAccess(ctx, e), "case-1", "litigation", storage.HoldFilter{Username: "alice"}, "ops")
		if err != nil {
			t.Fatal(err)
		}
		if e.LogIndex != 1 || e.Outcome != storage.AccessOK || e.Rows != 1 {
			t.Fatalf("entry after the hold: %+v", e)
		}
		if kinds(events(t, s)) != "hold,access" {
			t.Fatalf("events %s", kinds(events(t, s)))
		}
		// A change that fails records nothing: its transaction rolled back.
		failed := &storage.AccessEntry{Principal: "ops", Action: "hold.release"}
		if _, err := s.ReleaseHold(storage.WithAccess(ctx, failed), h.ID+1, "ops", "done"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("release of a missing hold: %v", err)
		}
		if failed.LogIndex != 0 || failed.ID != 0 {
			t.Fatalf("failed change left %+v", failed)
		}
		if all, _ := s.ListAccess(ctx, storage.AccessFilter{}, 10, 0); len(all) != 1 {
			t.Fatalf("trail after a failed change: %+v", all)
		}
		verifyOK(t, s, "")
	})
}

// TestARetriedChangeRecordsItsAccessAgain: a change whose first try set
// the entry's id but whose COMMIT did not land (a failover retry) records
// it again; one whose entry an earlier committed change of the same request
// recorded does not record it twice.
func TestARetriedChangeRecordsItsAccessAgain(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		e := &storage.AccessEntry{Principal: "ops", SourceIP: "127.0.0.1", Action: "hold.place", ID: 4242, LogIndex: 7} // as the lost try left it
		h, err := s.CreateHold(storage.WithAccess(ctx, e), "case-1", "litigation", storage.HoldFilter{Username: "alice"}, "ops")
		if err != nil {
			t.Fatal(err)
		}
		if e.ID == 4242 || e.LogIndex != 1 || e.Outcome != storage.AccessOK {
			t.Fatalf("the retried change did not record its entry again: %+v", e)
		}
		// The same request's next change finds the entry recorded.
		if _, err := s.ReleaseHold(storage.WithAccess(ctx, e), h.ID, "ops", "done"); err != nil {
			t.Fatal(err)
		}
		if all, _ := s.ListAccess(ctx, storage.AccessFilter{}, 10, 0); len(all) != 1 || all[0].ID != e.ID {
			t.Fatalf("trail: %+v, want the one entry %d", all, e.ID)
		}
		verifyOK(t, s, "")
	})
}

func TestVerifyNamesTrailEntriesChangedBehindItsBack(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, s *storage.Store, es []*storage.AccessEntry)
		kind   string
		detail string
	}{
		{"entry deleted with SQL", func(t *testing.T, s *storage.Store, es []*storage.AccessEntry) {
			exec(t, s, `DELETE FROM access_log WHERE id = ?`, es[0].ID)
		}, storage.ProblemRemoved, fmt.Sprintf("access entry %d (event 0: export by \"alice\") is missing", 1)},
		{"entry changed with SQL", func(t *testing.T, s *storage.Store, es []*storage.AccessEntry) {
			exec(t, s, `UPDATE access_log SET row_count = 0 WHERE id = ?`, es[1].ID)
		}, storage.ProblemChanged, "access entry 2 differs from its event 1"},
		{"entry inserted with SQL", func(t *testing.T, s *storage.Store, es []*storage.AccessEntry) {
			exec(t, s, `INSERT INTO access_log (at, action, outcome, log_idx) VALUES (?, 'export', 'ok', 99)`, timeArg(s, t0))
		}, storage.ProblemAdded, "not in the integrity log"},
		{"event and entry erased with SQL", func(t *testing.T, s *storage.Store, es []*storage.AccessEntry) {
			exec(t, s, `DELETE FROM access_log WHERE id = ?`, es[2].ID)
			exec(t, s, `UPDATE integrity_event SET body = `+emptyBlob(s)+` WHERE idx = 2`)
		}, storage.ProblemEvent, "access event 2 has no content, and no purge of the access trail withheld it"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
				es := trail(t, s)
				c.tamper(t, s, es)
				rep, err := s.VerifyDatabase(context.Background(), storage.VerifyOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if rep.OK || !hasProblem(rep, c.kind, 0, c.detail) {
					t.Fatalf("verify: %+v", rep.Problems)
				}
			})
		})
	}
}

func emptyBlob(s *storage.Store) string {
	if s.Dialect() == "postgres" {
		return `''::bytea`
	}
	return `X''`
}

func TestTrailPurgeIsEvidenceAndVerifies(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		es := trail(t, s)
		n, err := s.PurgeAccess(ctx, t0.Add(90*time.Minute), "retention", "access_log.retention=400d")
		if err != nil || n != 2 {
			t.Fatalf("purged %d: %v", n, err)
		}
		all, _ := s.ListAccess(ctx, storage.AccessFilter{}, 10, 0)
		if len(all) != 2 || all[0].ID != es[2].ID || all[1].Action != storage.AccessPurgeAction ||
			all[1].Rows != 2 || all[1].Params["below"] != "2" || all[1].Principal != "retention" {
			t.Fatalf("trail after the purge: %+v", all)
		}
		evs := events(t, s)
		if evs[0].Event != nil || evs[1].Event != nil || evs[2].Event == nil {
			t.Fatalf("purged entries' content is not withheld")
		}
		verifyOK(t, s, "")
		// Nothing expired: nothing removed, nothing recorded.
		if n, err := s.PurgeAccess(ctx, t0, "retention", "x"); err != nil || n != 0 {
			t.Fatalf("second purge: %d %v", n, err)
		}
		if len(events(t, s)) != 4 {
			t.Fatal("an empty purge was recorded")
		}
	})
}

func TestBackupsCarryTheTrail(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, u string) {
		src := storagetest.Open(t, u)
		ctx := context.Background()
		key := testKey(t, "mirror.test")
		trail(t, src)
		if _, err := src.PurgeAccess(ctx, t0.Add(30*time.Minute), "retention", "p"); err != nil {
			t.Fatal(err)
		}
		full := backup(t, src, key, nil)
		dst := storagetest.Open(t, storagetest.URL(t, "sqlite"))
		if _, err := dst.Restore(ctx, readers(full), storage.RestoreOptions{Key: key.VerifierKey()}); err != nil {
			t.Fatal(err)
		}
		want, _ := src.ListAccess(ctx, storage.AccessFilter{}, 10, 0)
		got, _ := dst.ListAccess(ctx, storage.AccessFilter{}, 10, 0)
		if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != 3 {
			t.Fatalf("restored trail\n%+v\nwant\n%+v", got, want)
		}
		verifyOK(t, dst, key.VerifierKey())
		// New entries after a restore get new ids.
		e := &storage.AccessEntry{Action: "export", Outcome: storage.AccessOK}
		if err := dst.AppendAccess(ctx, e); err != nil || e.ID <= want[len(want)-1].ID {
			t.Fatalf("entry after restore: %+v %v", e, err)
		}
	})
}
