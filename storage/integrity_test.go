package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/migrations"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

func testKey(t testing.TB, name string) *integrity.Key {
	t.Helper()
	skey, err := integrity.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	k, err := integrity.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func exec(t testing.TB, s *storage.Store, q string, args ...any) {
	t.Helper()
	if _, err := s.DB().Exec(s.DB().Rebind(q), args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func events(t testing.TB, s *storage.Store) []storage.LoggedEvent {
	t.Helper()
	ctx := context.Background()
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := s.ReadEvents(ctx, 0, head.Size)
	if err != nil || int64(len(evs)) != head.Size {
		t.Fatalf("read %d events of %d: %v", len(evs), head.Size, err)
	}
	// The head is the RFC 6962 root of the leaves, recomputed independently.
	mem := &integrity.MemoryStore{}
	var leaves []tlog.Hash
	for _, e := range evs {
		leaves = append(leaves, e.Leaf)
	}
	root, err := integrity.AppendTo(mem, 0, leaves)
	if err != nil || root != head.Root {
		t.Fatalf("leaves hash to %s, head says %s (%v)", root, head.Root, err)
	}
	return evs
}

func kinds(evs []storage.LoggedEvent) string {
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Kind))
	}
	return strings.Join(out, ",")
}

func verifyOK(t testing.TB, s *storage.Store, key string) storage.VerifyReport {
	t.Helper()
	rep, err := s.VerifyDatabase(context.Background(), storage.VerifyOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("verify found problems in an untouched database: %+v", rep.Problems)
	}
	return rep
}

func idBySourceID(t testing.TB, s *storage.Store, sourceID string) int64 {
	t.Helper()
	var id int64
	if err := s.DB().Get(&id, s.DB().Rebind(`SELECT id FROM activity_log WHERE source_id = ?`), sourceID); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestEveryChangeIsAnEventInTheSameTransaction(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		local, err := s.InsertActivity(ctx, storage.Activity{Platform: "tiktok", ActionType: "post", Username: "u1", Timestamp: t0})
		if err != nil {
			t.Fatal(err)
		}
		// New records take the COPY fast path on PostgreSQL.
		batch := []storage.Activity{mirrored("11", t0, "a"), mirrored("12", t0, "b"), mirrored("13", t0, "c")}
		if _, err := s.UpsertMirrored(ctx, batch); err != nil {
			t.Fatal(err)
		}
		// One changed at TAPD, one unchanged: one update event, nothing for the other.
		batch[1].ActionDetail = "迭代: b2"
		if r, err := s.UpsertReread(ctx, batch); err != nil || r.Updated != 1 || r.Unchanged != 2 {
			t.Fatalf("re-upsert = %+v, %v", r, err)
		}
		evs := events(t, s)
		if got := kinds(evs); got != "record,record,record,record,update" {
			t.Fatalf("events = %s", got)
		}
		up := evs[4].Event
		id12 := idBySourceID(t, s, "12")
		if up.Prev != 2 || up.Record.ID != id12 || up.Record.ActionDetail != "迭代: b2" || evs[2].RecordID != id12 {
			t.Fatalf("update event %+v does not point at record %d's first version (event 2)", up, id12)
		}
		stored, _ := s.GetActivity(ctx, id12)
		if !stored.IngestedAt.Equal(up.Record.IngestedAt) || stored.IngestedAt.Nanosecond() != 0 {
			t.Fatalf("ingested_at %v in the table, %v in the log", stored.IngestedAt, up.Record.IngestedAt)
		}

		// A deletion names the token; its prev is the record's latest version.
		if _, err := s.DeleteActivity(storage.WithToken(ctx, "ops"), id12); err != nil {
			t.Fatal(err)
		}
		h, err := s.CreateHold(storage.WithToken(ctx, "legal"), "case-1", "litigation", storage.HoldFilter{Username: "nobody"}, "legal")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReleaseHold(ctx, h.ID, "legal", "settled"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReleaseHold(ctx, h.ID, "legal", "again"); !errors.Is(err, storage.ErrReleased) {
			t.Fatalf("second release = %v, want ErrReleased", err)
		}
		n, err := s.DeleteAllActivities(storage.WithToken(ctx, "admin_token"))
		if err != nil || n != 3 {
			t.Fatalf("delete all = %d, %v", n, err)
		}
		evs = events(t, s)
		if got := kinds(evs[5:]); got != "delete,hold,release,delete,delete,delete" {
			t.Fatalf("events after the updates = %s", got)
		}
		del := evs[5].Event
		if del.RecordID != id12 || del.Prev != 4 || del.Token != "ops" {
			t.Fatalf("delete event %+v", del)
		}
		if hold := evs[6].Event.Hold; hold.Name != "case-1" || hold.Filter != `{"username":"nobody"}` || evs[6].Event.Token != "legal" {
			t.Fatalf("hold event %+v", evs[6].Event)
		}
		if rel := evs[7].Event; rel.Hold.Reason != "settled" || rel.Hold.ID != h.ID {
			t.Fatalf("release event %+v", rel)
		}
		if evs[8].RecordID != local || evs[8].Event.Token != "admin_token" || evs[8].Event.Prev != 0 {
			t.Fatalf("delete-all's first event %+v", evs[8])
		}
		verifyOK(t, s, "")
	})
}

func TestAFailedWriteLogsNothing(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("1", t0, "a")}); err != nil {
			t.Fatal(err)
		}
		// A batch that fails halfway (a record without source_id) rolls back
		// its records and its events together.
		bad := []storage.Activity{mirrored("2", t0, "b"), mirrored("", t0, "c")}
		if _, err := s.UpsertMirrored(ctx, bad); err == nil {
			t.Fatal("a record without source_id was accepted")
		}
		// So does a record the log cannot encode (invalid UTF-8, which SQLite would store).
		if _, err := s.InsertActivity(ctx, storage.Activity{Platform: "p\xff", ActionType: "x", Timestamp: t0}); err == nil {
			t.Fatal("invalid UTF-8 stored")
		}
		if evs := events(t, s); len(evs) != 1 {
			t.Fatalf("%d events after failed writes, want 1", len(evs))
		}
		if n, _ := s.CountActivities(ctx, storage.Filter{}); n != 1 {
			t.Fatalf("%d rows after failed writes, want 1", n)
		}
		verifyOK(t, s, "")
	})
}

func TestConcurrentWritersKeepOneLog(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 5 {
					var batch []storage.Activity
					for j := range 20 {
						batch = append(batch, mirrored(fmt.Sprintf("%d-%d-%d", w, i, j), t0, "x"))
					}
					if _, err := s.UpsertMirrored(ctx, batch); err != nil {
						errs <- err
						return
					}
					if _, err := s.InsertActivity(ctx, storage.Activity{Platform: "p", ActionType: "a", Timestamp: t0}); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if evs := events(t, s); len(evs) != 4*5*21 {
			t.Fatalf("%d events, want %d", len(evs), 4*5*21)
		}
		verifyOK(t, s, "")
	})
}

// tampered builds a small archive with a signed checkpoint.
func tampered(t *testing.T, s *storage.Store, key *integrity.Key) (ids map[string]int64) {
	t.Helper()
	ctx := context.Background()
	var batch []storage.Activity
	for i := range 8 {
		batch = append(batch, mirrored(fmt.Sprint(100+i), t0.Add(time.Duration(i)*time.Minute), fmt.Sprint("t", i)))
	}
	if _, err := s.UpsertMirrored(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if _, created, err := s.SignCheckpoint(ctx, key, time.Now()); err != nil || !created {
		t.Fatalf("signing: %v %v", created, err)
	}
	verifyOK(t, s, key.VerifierKey())
	ids = map[string]int64{}
	for _, a := range batch {
		ids[a.SourceID] = idBySourceID(t, s, a.SourceID)
	}
	return ids
}

func problems(t *testing.T, s *storage.Store, key string) storage.VerifyReport {
	t.Helper()
	rep, err := s.VerifyDatabase(context.Background(), storage.VerifyOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Count == 0 || len(rep.Problems) == 0 {
		t.Fatalf("verify found nothing wrong: %+v", rep)
	}
	return rep
}

func hasProblem(rep storage.VerifyReport, kind string, recordID int64, detail string) bool {
	for _, p := range rep.Problems {
		if p.Kind == kind && (recordID == 0 || p.RecordID == recordID) && strings.Contains(p.Detail, detail) {
			return true
		}
	}
	return false
}

func TestVerifyDatabaseNamesWhatChangedBehindItsBack(t *testing.T) {
	key := testKey(t, "mirror.test")
	cases := []struct {
		name   string
		tamper func(t *testing.T, s *storage.Store, ids map[string]int64)
		check  func(rep storage.VerifyReport, ids map[string]int64) bool
	}{
		{"row updated with SQL", func(t *testing.T, s *storage.Store, ids map[string]int64) {
			// The row holds its record event's only copy: the leaf names it.
			exec(t, s, `UPDATE activity_log SET username = 'mallory' WHERE id = ?`, ids["103"])
		}, func(rep storage.VerifyReport, ids map[string]int64) bool {
			return hasProblem(rep, storage.ProblemChanged, ids["103"], "differs from its latest event 3 (record)")
		}},
		{"row changed at TAPD, then updated with SQL", func(t *testing.T, s *storage.Store, ids map[string]int64) {
			// An update event stores its content: the differing fields are named.
			if _, err := s.UpsertMirrored(context.Background(), []storage.Activity{mirrored("104", t0.Add(4*time.Minute), "renamed")}); err != nil {
				t.Fatal(err)
			}
			exec(t, s, `UPDATE activity_log SET username = 'mallory' WHERE id = ?`, ids["104"])
		}, func(rep storage.VerifyReport, ids map[string]int64) bool {
			return rep.Count == 1 && hasProblem(rep, storage.ProblemChanged, ids["104"], "differs from its latest event 8 (update)") &&
				hasProblem(rep, storage.ProblemChanged, ids["104"], "fields: username")
		}},
		{"row deleted with SQL after a change at TAPD", func(t *testing.T, s *storage.Store, ids map[string]int64) {
			if _, err := s.UpsertMirrored(context.Background(), []storage.Activity{mirrored("106", t0.Add(6*time.Minute), "renamed")}); err != nil {
				t.Fatal(err)
			}
			exec(t, s, `DELETE FROM activity_log WHERE id = ?`, ids["106"])
		}, func(rep storage.VerifyReport, ids map[string]int64) bool {
			return rep.Count == 1 && hasProblem(rep, storage.ProblemRemoved, ids["106"], "removed behind the service's back")
		}},
		{"row pointed at another event with SQL", func(t *testing.T, s *storage.Store, ids map[string]int64) {
			exec(t, s, `UPDATE activity_log SET log_idx = 0 WHERE id = ?`, ids["102"])
		}, func(rep storage.VerifyReport, ids map[string]int64) bool {
			return hasProblem(rep, storage.ProblemChanged, ids["102"], "no longer points at its record event 2")
		}},
		{"row deleted with SQL", func(t *testing.T, s *storage.Store, ids map[string]int64) {
			exec(t, s, `DELETE FROM activity_log WHERE id = ?`, ids["105"])
		}, func(rep storage.VerifyReport, ids map[string]int64) bool {
			return hasProblem(rep, storage.ProblemRemoved, ids["105"], "removed behind the service's back")
		}},
		{"row inserted with SQL", func(t *testing.T, s *storage.Store, ids map[string]int64) {
			exec(t, s, `INSERT INTO activity_log (platform, action_type, timestamp, source, ingested_at) VALUES ('tapd', 'add', ?, 'local', ?)`,
				timeArg(s, t0), timeArg(s, t0))
			var id int64
			if err := s.DB().Get(&id, `SELECT MAX(id) FROM activity_log`); err != nil {
				t.Fatal(err)
			}
			ids["new"] = id
		}, func(rep storage.VerifyReport, ids map[string]int64) bool {
			return hasProblem(rep, storage.ProblemAdded, ids["new"], "added behind the service's back")
		}},
		{"two leaves swapped", func(t *testing.T, s *storage.Store, ids map[string]int64) {
			exec(t, s, `UPDATE integrity_event SET idx = -1 WHERE idx = 2`)
			exec(t, s, `UPDATE integrity_event SET idx = 2 WHERE idx = 5`)
			exec(t, s, `UPDATE integrity_event SET idx = 5 WHERE idx = -1`)
		}, func(rep storage.VerifyReport, ids map[string]int64) bool {
			return rep.Problems[0].Kind == storage.ProblemHash && *rep.Problems[0].Event == 2
		}},
		{"stored hash altered", func(t *testing.T, s *storage.Store, ids map[string]int64) {
			setStoredHash(t, s, 1, storedHash(t, s, 0))
		}, func(rep storage.VerifyReport, ids map[string]int64) bool {
			return hasProblem(rep, storage.ProblemHash, 0, "integrity_hash was altered")
		}},
		{"event content altered", func(t *testing.T, s *storage.Store, ids map[string]int64) {
			// A deletion stores the record event's content (the row held it).
			if _, err := s.DeleteActivity(context.Background(), ids["100"]); err != nil {
				t.Fatal(err)
			}
			exec(t, s, `UPDATE integrity_event SET body = (SELECT body FROM integrity_event WHERE idx = 0) WHERE idx = 6`)
		}, func(rep storage.VerifyReport, ids map[string]int64) bool {
			return hasProblem(rep, storage.ProblemEvent, 0, "event 6 (record of record")
		}},
		{"checkpoint signed with another key", func(t *testing.T, s *storage.Store, ids map[string]int64) {
			other := testKey(t, "mirror.test")
			head, _ := s.Head(context.Background())
			signed, _ := other.Sign(integrity.Checkpoint{Size: head.Size, Root: head.Root, Time: time.Now()})
			exec(t, s, `UPDATE integrity_checkpoint SET signed = ?`, string(signed))
		}, func(rep storage.VerifyReport, ids map[string]int64) bool {
			return hasProblem(rep, storage.ProblemCheckpoint, 0, "not signed by the trusted key")
		}},
		{"earlier checkpoint not a prefix", func(t *testing.T, s *storage.Store, ids map[string]int64) {
			var bogus tlog.Hash
			signed, _ := key.Sign(integrity.Checkpoint{Size: 3, Root: bogus, Time: time.Now()})
			exec(t, s, `INSERT INTO integrity_checkpoint (tree_size, root, signed, signed_at) VALUES (3, ?, ?, ?)`, bogus[:], string(signed), timeArg(s, t0))
		}, func(rep storage.VerifyReport, ids map[string]int64) bool {
			return hasProblem(rep, storage.ProblemCheckpoint, 0, "checkpoint of size 3") && hasProblem(rep, storage.ProblemCheckpoint, 0, "not a prefix")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
				ids := tampered(t, s, key)
				c.tamper(t, s, ids)
				rep := problems(t, s, key.VerifierKey())
				if !c.check(rep, ids) {
					t.Fatalf("problems %+v", rep.Problems)
				}
			})
		})
	}
}

func storedHash(t *testing.T, s *storage.Store, index int64) tlog.Hash {
	t.Helper()
	hs, err := s.HashReader(context.Background()).ReadHashes([]int64{index})
	if err != nil {
		t.Fatal(err)
	}
	return hs[0]
}

// setStoredHash rewrites one stored tree hash inside its run, as someone
// with SQL access could.
func setStoredHash(t *testing.T, s *storage.Store, index int64, h tlog.Hash) {
	t.Helper()
	var start int64
	var run []byte
	if err := s.DB().QueryRowx(s.DB().Rebind(`SELECT idx, hashes FROM integrity_hash WHERE idx <= ? ORDER BY idx DESC LIMIT 1`), index).Scan(&start, &run); err != nil {
		t.Fatal(err)
	}
	copy(run[(index-start)*tlog.HashSize:], h[:])
	exec(t, s, `UPDATE integrity_hash SET hashes = ? WHERE idx = ?`, run, start)
}

// timeArg is a time as the dialect stores it.
func timeArg(s *storage.Store, t time.Time) any {
	if s.Dialect() == "sqlite" {
		return t.Unix()
	}
	return t
}

func TestSigningRefusesALogThatNoLongerExtendsItsCheckpoint(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		key := testKey(t, "mirror.test")
		tampered(t, s, key)
		if _, err := s.InsertActivity(ctx, storage.Activity{Platform: "p", ActionType: "a", Timestamp: t0}); err != nil {
			t.Fatal(err)
		}
		// The stored hash of the first 8 events' subtree, rewritten.
		setStoredHash(t, s, tlog.StoredHashIndex(3, 0), storedHash(t, s, 0))
		if _, _, err := s.SignCheckpoint(ctx, key, time.Now()); err == nil || !strings.Contains(err.Error(), "the log's head says") {
			t.Fatalf("signed a log whose hashes disagree with its head: %v", err)
		}
		// Head rewritten to match: the log still does not extend what was signed.
		root, err := integrity.TreeHash(9, s.HashReader(ctx))
		if err != nil {
			t.Fatal(err)
		}
		exec(t, s, `UPDATE integrity_state SET root = ?`, root[:])
		if _, _, err := s.SignCheckpoint(ctx, key, time.Now()); err == nil || !strings.Contains(err.Error(), "no longer extends the checkpoint of size 8") {
			t.Fatalf("signed a rewritten log: %v", err)
		}
	})
}

func TestBundlesFromTheDatabaseVerifyOffline(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		key := testKey(t, "mirror.test")
		ids := tampered(t, s, key)
		if _, err := s.DeleteActivity(storage.WithToken(ctx, "ops"), ids["101"]); err != nil {
			t.Fatal(err)
		}
		// A purged local record: its events are withheld in a full bundle.
		purgeOldLocal(t, s)
		earlier, _ := s.LatestCheckpoint(ctx)
		cp, _, err := s.SignCheckpoint(ctx, key, time.Now())
		if err != nil || cp.Size != 11 {
			t.Fatalf("checkpoint %d, %v", cp.Size, err)
		}
		var full bytes.Buffer
		n, err := s.WriteBundle(ctx, &full, storage.BundleRequest{Checkpoint: cp, Key: key.VerifierKey()})
		if err != nil || n != 11 {
			t.Fatalf("bundle of %d events: %v", n, err)
		}
		earlierCP, _ := integrity.OpenCheckpoint(earlier.Signed, key.VerifierKey())
		sum, err := integrity.Verify(bytes.NewReader(full.Bytes()), key.VerifierKey(), &earlierCP)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Records != 8 || sum.Deletions != 1 || sum.Purges != 1 || sum.Withheld != 1 || sum.Events != 11 {
			t.Fatalf("summary %+v", sum)
		}

		// Filtered: the events of matching live records, each with its proof.
		var filtered bytes.Buffer
		f := storage.Filter{Since: t0.Add(4 * time.Minute)}
		if n, err := s.WriteBundle(ctx, &filtered, storage.BundleRequest{Checkpoint: cp, Key: key.VerifierKey(), Filter: &f, Describe: "since"}); err != nil || n != 4 {
			t.Fatalf("filtered bundle of %d events: %v", n, err)
		}
		if sum, err := integrity.Verify(bytes.NewReader(filtered.Bytes()), key.VerifierKey(), nil); err != nil || !sum.Filtered || sum.Records != 4 {
			t.Fatalf("filtered: %+v, %v", sum, err)
		}

		// A truncated bundle, another key, an earlier checkpoint that is not a prefix.
		var ee *integrity.EventError
		cut := full.Bytes()[:full.Len()-3000]
		if _, err := integrity.Verify(bytes.NewReader(cut), key.VerifierKey(), nil); !errors.As(err, &ee) {
			t.Fatalf("truncated bundle: %v", err)
		}
		other := testKey(t, "mirror.test")
		if _, err := integrity.Verify(bytes.NewReader(full.Bytes()), other.VerifierKey(), nil); !errors.Is(err, integrity.ErrSignature) {
			t.Fatalf("another key: %v", err)
		}
		var bogus tlog.Hash
		forkSigned, _ := key.Sign(integrity.Checkpoint{Size: 5, Root: bogus, Time: time.Now()})
		fork, _ := integrity.OpenCheckpoint(forkSigned, key.VerifierKey())
		if _, err := integrity.Verify(bytes.NewReader(full.Bytes()), key.VerifierKey(), &fork); !errors.Is(err, integrity.ErrNotPrefix) {
			t.Fatalf("not a prefix: %v", err)
		}

		// Proofs from the database check against the signed root.
		proofs, err := s.RecordProofs(ctx, ids["103"], cp.Size)
		if err != nil || len(proofs) != 1 {
			t.Fatalf("proofs %v, %v", proofs, err)
		}
		p := proofs[0]
		if integrity.LeafHash(p.Encoding) != p.Leaf || integrity.CheckInclusion(p.Path, cp.Size, cp.Root, p.Index, p.Leaf) != nil {
			t.Fatalf("inclusion proof of event %d does not check", p.Index)
		}
		cons, from, to, err := s.Consistency(ctx, earlier.Size, cp.Size)
		if err != nil || from != earlier.Root || to != cp.Root || integrity.CheckConsistency(cons, cp.Size, cp.Root, earlier.Size, earlier.Root) != nil {
			t.Fatalf("consistency proof does not check: %v", err)
		}
		if _, err := s.RecordProofs(ctx, 99999, cp.Size); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("proof of an unknown record: %v", err)
		}
	})
}

func TestLegalHoldsBlockDeletionAndPurge(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		old := t0.AddDate(-2, 0, 0)
		alice, _ := s.InsertActivity(ctx, storage.Activity{Platform: "p", ActionType: "a", Username: "alice", Timestamp: old})
		bob, _ := s.InsertActivity(ctx, storage.Activity{Platform: "p", ActionType: "a", Username: "bob", Timestamp: old})
		recent, _ := s.InsertActivity(ctx, storage.Activity{Platform: "p", ActionType: "a", Username: "alice", Timestamp: t0})
		h, err := s.CreateHold(ctx, "case-7", "subpoena", storage.HoldFilter{Username: "alice", Until: t0.Unix()}, "legal")
		if err != nil {
			t.Fatal(err)
		}
		var held *storage.HeldError
		if _, err := s.DeleteActivity(ctx, alice); !errors.As(err, &held) || held.Hold.Name != "case-7" || held.RecordID != alice {
			t.Fatalf("deleting a held record: %v", err)
		}
		if _, err := s.DeleteAllActivities(ctx); !errors.As(err, &held) {
			t.Fatalf("deleting all with a hold: %v", err)
		}
		if n, _ := s.CountActivities(ctx, storage.Filter{}); n != 3 {
			t.Fatalf("a refused delete-all deleted %d rows", 3-n)
		}
		r, err := s.Purge(ctx, storage.SourceLocal, t0.AddDate(-1, 0, 0), "retention.local=365d")
		if err != nil || r.Purged != 1 || r.Held != 1 {
			t.Fatalf("purge = %+v, %v", r, err)
		}
		if _, err := s.GetActivity(ctx, bob); !errors.Is(err, storage.ErrNotFound) {
			t.Fatal("bob's old record survived the purge")
		}
		if _, err := s.GetActivity(ctx, alice); err != nil {
			t.Fatal("the held record was purged")
		}
		evs := events(t, s)
		if got := kinds(evs); got != "record,record,record,hold,purge" {
			t.Fatalf("events = %s", got)
		}
		if p := evs[4].Event; p.RecordID != bob || p.Prev != 1 || p.Policy != "retention.local=365d" {
			t.Fatalf("purge event %+v", p)
		}
		if evs[1].Event != nil {
			t.Fatal("the purged record's content is still in its event")
		}
		if _, err := s.ReleaseHold(ctx, h.ID, "legal", "case closed"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DeleteActivity(ctx, alice); err != nil {
			t.Fatalf("deleting after release: %v", err)
		}
		holds, _ := s.ListHolds(ctx)
		if len(holds) != 1 || holds[0].Active() || holds[0].ReleaseReason != "case closed" {
			t.Fatalf("holds %+v", holds)
		}
		if _, err := s.GetActivity(ctx, recent); err != nil {
			t.Fatal(err)
		}
		verifyOK(t, s, "")
	})
}

func TestPurgedMirroredRecordsStayPurged(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		old := []storage.Activity{mirrored("1", t0.AddDate(-3, 0, 0), "a"), mirrored("2", t0, "b")}
		if _, err := s.UpsertMirrored(ctx, old); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Purge(ctx, storage.SourceTAPD, t0.AddDate(-1, 0, 0), "retention.tapd=365d"); err != nil || r.Purged != 1 {
			t.Fatalf("purge = %+v, %v", r, err)
		}
		if r, _ := s.UpsertReread(ctx, old); r.Suppressed != 1 || r.Unchanged != 1 {
			t.Fatalf("a purged record came back: %+v", r)
		}
		verifyOK(t, s, "")
	})
}

func TestUpgradeLogsExistingRowsInIDOrder(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, u string) {
		ctx := context.Background()
		s, err := storage.Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// The database as the previous version left it: migrations 0001–0004 and rows.
		all, _ := migrations.For(s.Dialect())
		exec(t, s, `CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)`)
		for _, m := range all {
			if m.Version >= "0005" {
				break
			}
			exec(t, s, m.SQL)
			exec(t, s, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, 'then')`, m.Version)
		}
		for i := range 7 {
			exec(t, s, `INSERT INTO activity_log (platform, action_type, timestamp, source, source_id, extra, ingested_at)
				VALUES ('tapd', 'add', ?, 'tapd', ?, '{"ip":"1.2.3.4"}', ?)`, timeArg(s, t0.Add(time.Duration(i)*time.Second)), fmt.Sprint(i), timeArg(s, t0))
		}
		if _, err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		evs := events(t, s)
		var ids []int64
		for _, e := range evs {
			if e.Kind != integrity.KindRecord || e.Event.Record.Extra["ip"] != "1.2.3.4" {
				t.Fatalf("upgrade event %+v", e)
			}
			ids = append(ids, e.RecordID)
		}
		if len(ids) != 7 || !slices.IsSorted(ids) {
			t.Fatalf("upgrade logged records %v", ids)
		}
		// Idempotent: a second start logs nothing more.
		if n, err := s.BackfillLog(ctx); err != nil || n != 0 {
			t.Fatalf("second backfill = %d, %v", n, err)
		}
		verifyOK(t, s, "")
	})
}

func TestIncrementalVerifyChecksOnlyNewEvents(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		key := testKey(t, "mirror.test")
		ids := tampered(t, s, key)
		exec(t, s, `UPDATE activity_log SET username = 'mallory' WHERE id = ?`, ids["100"])
		if _, err := s.InsertActivity(ctx, storage.Activity{Platform: "p", ActionType: "a", Timestamp: t0}); err != nil {
			t.Fatal(err)
		}
		rep, err := s.VerifyDatabase(ctx, storage.VerifyOptions{Key: key.VerifierKey(), From: 8})
		if err != nil || !rep.OK || rep.Records != 1 || rep.Full {
			t.Fatalf("incremental report %+v, %v", rep, err)
		}
		// A row touched by a new event is compared.
		exec(t, s, `UPDATE activity_log SET username = 'mallory' WHERE platform = 'p'`)
		rep, _ = s.VerifyDatabase(ctx, storage.VerifyOptions{Key: key.VerifierKey(), From: 8})
		if rep.OK || !hasProblem(rep, storage.ProblemChanged, 0, "differs from its latest event 8") {
			t.Fatalf("incremental report %+v", rep)
		}
	})
}

// TestBundleNamesARowRemovedBySQL: a live record's content is its row; a
// row deleted with plain SQL leaves its record event without content, and
// an export says so instead of withholding it as if purged.
func TestBundleNamesARowRemovedBySQL(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		key := testKey(t, "mirror.test")
		ids := tampered(t, s, key)
		exec(t, s, `DELETE FROM activity_log WHERE id = ?`, ids["102"])
		cp, _ := s.LatestCheckpoint(ctx)
		_, err := s.WriteBundle(ctx, io.Discard, storage.BundleRequest{Checkpoint: cp, Key: key.VerifierKey()})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("event 2 (record of record %d)", ids["102"])) ||
			!strings.Contains(err.Error(), "removed or changed behind the service's back") {
			t.Fatalf("bundle of a database missing a row: %v", err)
		}
		if _, err := s.RecordProofs(ctx, ids["103"], cp.Size); err != nil {
			t.Fatalf("proofs of an untouched record: %v", err)
		}
	})
}

// TestUpgradeToLeanLog: a log written before record events kept their
// content in the row (every body stored, purged ones NULL, no log_idx)
// upgrades in place without rewriting activity_log: purged content stays
// withheld, the database and a full bundle verify, and the rows logged
// before (log_idx NULL) are changed, deleted and purged through the record
// index beside new ones.
func TestUpgradeToLeanLog(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		key := testKey(t, "mirror.test")
		ids := tampered(t, s, key)
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("104", t0.Add(4*time.Minute), "renamed")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DeleteActivity(ctx, ids["105"]); err != nil {
			t.Fatal(err)
		}
		purgeOldLocal(t, s)
		// Back to the earlier layout.
		for _, e := range events(t, s) {
			if e.Event != nil {
				body, err := integrity.EncodeEvent(*e.Event)
				if err != nil {
					t.Fatal(err)
				}
				exec(t, s, `UPDATE integrity_event SET body = ? WHERE idx = ? AND body IS NULL`, body, e.Index)
			}
		}
		exec(t, s, `UPDATE integrity_event SET body = NULL WHERE length(body) = 0`)
		exec(t, s, `UPDATE activity_log SET log_idx = NULL`)
		exec(t, s, `DROP INDEX integrity_event_record_idx`)
		exec(t, s, `CREATE INDEX integrity_event_record_idx ON integrity_event (record_id, idx)`)
		exec(t, s, `ALTER TABLE activity_log DROP COLUMN log_idx`)
		exec(t, s, `DELETE FROM schema_migrations WHERE version = '0008_integrity_lean'`)

		if _, err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		verifyOK(t, s, key.VerifierKey())
		var legacy int
		if err := s.DB().Get(&legacy, `SELECT COUNT(*) FROM activity_log WHERE log_idx IS NULL`); err != nil || legacy != 7 {
			t.Fatalf("%d rows left as they were (want all 7), %v", legacy, err)
		}
		if sum := verifiedBundle(t, s, key); sum.Withheld != 1 || sum.Updates != 1 || sum.Deletions != 1 || sum.Purges != 1 {
			t.Fatalf("bundle after the upgrade: %+v", sum)
		}
		// Writes go on: rows logged before are changed and deleted through
		// the record index; new rows keep their event.
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{mirrored("106", t0.Add(6*time.Minute), "renamed"), mirrored("200", t0, "new")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DeleteActivity(ctx, ids["107"]); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Purge(ctx, storage.SourceTAPD, t0.Add(2*time.Minute+time.Second), "retention.tapd=test"); err != nil || r.Purged != 4 {
			t.Fatalf("purge of rows logged before = %+v, %v", r, err)
		}
		verifyOK(t, s, key.VerifierKey())
		if sum := verifiedBundle(t, s, key); sum.Withheld != 5 || sum.Updates != 2 {
			t.Fatalf("bundle after writes on the upgraded log: %+v", sum)
		}
	})
}

// TestBatchWithARecordTwiceLogsOneVersion: a record read twice in one batch,
// changed at TAPD between the two pages and in different chunks of the
// transaction, is stored once (its last copy) with an event that holds it.
func TestBatchWithARecordTwiceLogsOneVersion(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		key := testKey(t, "mirror.test")
		var batch []storage.Activity
		for i := range 600 {
			batch = append(batch, mirrored(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second), "t"))
		}
		batch[550] = mirrored("0", t0, "renamed between pages")
		res, err := s.UpsertMirrored(ctx, batch)
		if err != nil || res.Inserted != 599 || res.Unchanged != 1 || res.Updated != 0 {
			t.Fatalf("upsert = %+v, %v", res, err)
		}
		got, _ := s.ListActivities(ctx, storage.Filter{Source: storage.SourceTAPD, Until: t0.Add(time.Second)}, 10, 0)
		if len(got) != 1 || got[0].ActionDetail != "迭代: renamed between pages" {
			t.Fatalf("stored %+v", got)
		}
		verifyOK(t, s, "")
		if sum := verifiedBundle(t, s, key); sum.Records != 599 {
			t.Fatalf("bundle: %+v", sum)
		}
	})
}

// purgeOldLocal stores a local record three years old and purges it: its
// events are withheld from then on.
func purgeOldLocal(t *testing.T, s *storage.Store) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.InsertActivity(ctx, storage.Activity{Platform: "p", ActionType: "a", Timestamp: t0.AddDate(-3, 0, 0)}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Purge(ctx, storage.SourceLocal, t0.AddDate(-1, 0, 0), "retention.local=365d"); err != nil || r.Purged != 1 {
		t.Fatalf("purge = %+v, %v", r, err)
	}
}

// verifiedBundle signs a checkpoint of the whole log, writes a full bundle
// and verifies it offline, and returns its summary.
func verifiedBundle(t *testing.T, s *storage.Store, key *integrity.Key) integrity.Summary {
	t.Helper()
	ctx := context.Background()
	cp, _, err := s.SignCheckpoint(ctx, key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var full bytes.Buffer
	if _, err := s.WriteBundle(ctx, &full, storage.BundleRequest{Checkpoint: cp, Key: key.VerifierKey()}); err != nil {
		t.Fatal(err)
	}
	sum, err := integrity.Verify(&full, key.VerifierKey(), nil)
	if err != nil {
		t.Fatalf("offline verification of the bundle: %v", err)
	}
	return sum
}
