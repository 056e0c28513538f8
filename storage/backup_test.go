package storage_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// archiveHistory gives s every kind of event and some of each kind of sync
// state: local and mirrored records, an update, a deletion, a purge, a
// hold placed and lifted, coverage, a gap with its reason and its
// acknowledgement, a learned fact.
func archiveHistory(t *testing.T, s *storage.Store) {
	t.Helper()
	ctx := storage.WithToken(context.Background(), "ops")
	if _, err := s.InsertActivity(ctx, storage.Activity{Platform: "tiktok", ActionType: "post", Username: "u1", Timestamp: t0}); err != nil {
		t.Fatal(err)
	}
	batch := []storage.Activity{mirrored("11", t0, "a"), mirrored("12", t0.Add(time.Minute), "b"), mirrored("13", t0.Add(2*time.Minute), "c")}
	if _, err := s.UpsertMirrored(ctx, batch); err != nil {
		t.Fatal(err)
	}
	batch[1].ActionDetail = "迭代: b2"
	if r, err := s.UpsertReread(ctx, batch); err != nil || r.Updated != 1 {
		t.Fatalf("re-upsert = %+v, %v", r, err)
	}
	if _, err := s.DeleteActivity(ctx, idBySourceID(t, s, "13")); err != nil {
		t.Fatal(err)
	}
	purgeOldLocal(t, s)
	h, err := s.CreateHold(ctx, "case-1", "litigation", storage.HoldFilter{Username: "u1"}, "legal")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReleaseHold(ctx, h.ID, "legal", "settled"); err != nil {
		t.Fatal(err)
	}
	day := storage.Interval{Start: t0.Add(-24 * time.Hour), End: t0}
	early := storage.Interval{Start: t0.Add(-48 * time.Hour), End: t0.Add(-47 * time.Hour)}
	if err := s.CommitWindow(ctx, storage.WindowCommit{Workspace: "10074561", Window: storage.Interval{Start: early.Start, End: day.End},
		Covered: []storage.Interval{early, day},
		Gaps:    []storage.GapReason{{Interval: storage.Interval{Start: t0.Add(-48 * time.Hour), End: t0.Add(-47 * time.Hour)}, Reason: "horizon", Retry: false}}}); err != nil {
		t.Fatal(err)
	}
	if acked, err := s.AcknowledgeGaps(ctx, "10074561", "known outage"); err != nil || len(acked) != 1 {
		t.Fatalf("acknowledged %v, %v", acked, err)
	}
	if err := s.SetMeta(ctx, "tapd.end_time_minute", "inclusive"); err != nil {
		t.Fatal(err)
	}
	// A destination that has acknowledged the log's first events resumes there.
	if err := s.SaveForwardCursor(ctx, storage.ForwardCursor{Name: "siem", Next: 3, LastSuccess: t0, LastError: "503 from siem"}); err != nil {
		t.Fatal(err)
	}
}

// moreHistory adds what comes after a full backup: a new record, a second
// version of one backed up, and a purged record with the highest id (7).
func moreHistory(t *testing.T, s *storage.Store) {
	t.Helper()
	ctx := context.Background()
	batch := []storage.Activity{mirrored("11", t0, "a2"), mirrored("14", t0.Add(3*time.Minute), "d")}
	if r, err := s.UpsertReread(ctx, batch); err != nil || r.Updated != 1 || r.Inserted != 1 {
		t.Fatalf("upsert = %+v, %v", r, err)
	}
	purgeOldLocal(t, s)
}

func backup(t *testing.T, s *storage.Store, key *integrity.Key, earlier []byte) []byte {
	t.Helper()
	var from *integrity.Checkpoint
	if earlier != nil {
		cp, _, err := integrity.ReadBackupCheckpoint(bytes.NewReader(earlier), key.VerifierKey())
		if err != nil {
			t.Fatal(err)
		}
		from = &cp
	}
	var buf bytes.Buffer
	if _, err := s.WriteBackup(context.Background(), &buf, key, from, time.Now()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readers(files ...[]byte) []io.Reader {
	out := make([]io.Reader, len(files))
	for i, f := range files {
		out[i] = bytes.NewReader(f)
	}
	return out
}

// archiveView is what the API and a sync see of a database: every record
// with its id and content, the count, the log's root and every state row a
// backup carries (integrity checkpoints aside: a restore adds the backups').
func archiveView(t *testing.T, s *storage.Store, key *integrity.Key) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	list, err := s.ListActivities(ctx, storage.Filter{}, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range list {
		fmt.Fprintf(&b, "%d %s %s %s %s %s %d %s %s %s %v %d\n", a.ID, a.Platform, a.Serial, a.ActionType, a.ActionDetail, a.Username,
			a.Timestamp.Unix(), a.Source, a.SourceID, a.WorkspaceID, a.ExtraFields(), a.IngestedAt.Unix())
	}
	n, err := s.CountActivities(ctx, storage.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	head, _ := s.Head(ctx)
	fmt.Fprintf(&b, "count %d, log %d %s\n", n, head.Size, head.Root)
	holds, _ := s.ListHolds(ctx)
	for _, h := range holds {
		fmt.Fprintf(&b, "hold %d %s %s %s %d %s %d %s\n", h.ID, h.Name, h.Reason, h.CreatedBy, h.CreatedAt.Unix(), h.ReleasedBy, h.ReleasedAt.Unix(), h.ReleaseReason)
	}
	rd, err := integrity.OpenBackup(bytes.NewReader(backup(t, s, key, nil)), key.VerifierKey(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := rd.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	var state []string
	for {
		line, err := rd.NextState()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(line, []byte(`"integrity_checkpoint"`)) {
			state = append(state, string(line))
		}
	}
	slices.Sort(state)
	b.WriteString(strings.Join(state, "\n"))
	// SQLite keeps times to the second.
	return subSecond.ReplaceAllString(b.String(), "Z")
}

var subSecond = regexp.MustCompile(`\.\d+Z`)

func TestBackupRestoresIntoEitherDialect(t *testing.T) {
	for _, pair := range [][2]string{{"sqlite", "postgres"}, {"postgres", "sqlite"}} {
		t.Run(pair[0]+"→"+pair[1], func(t *testing.T) {
			ctx := context.Background()
			key := testKey(t, "mirror.test")
			src := storagetest.Open(t, storagetest.URL(t, pair[0]))
			archiveHistory(t, src)
			full := backup(t, src, key, nil)
			moreHistory(t, src)
			// A checkpoint of the source's own, carried as state.
			if _, _, err := src.SignCheckpoint(ctx, key, time.Now()); err != nil {
				t.Fatal(err)
			}
			inc := backup(t, src, key, full)
			nothingNew := backup(t, src, key, inc)

			dst := storagetest.Open(t, storagetest.URL(t, pair[1]))
			res, err := dst.Restore(ctx, readers(full, inc, nothingNew), storage.RestoreOptions{Key: key.VerifierKey()})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Backups) != 3 || res.Backups[1].Manifest.From != res.Backups[0].Checkpoint.Size || res.Backups[2].Events != 0 || res.Records != 4 {
				t.Fatalf("restore = %+v", res)
			}
			if want, got := archiveView(t, src, key), archiveView(t, dst, key); got != want {
				t.Fatalf("restored archive differs:\n--- source\n%s\n--- restored\n%s", want, got)
			}
			verifyOK(t, dst, key.VerifierKey())
			// Forwarding resumes where the backup saw each destination.
			if c, err := dst.ForwardCursor(ctx, "siem"); err != nil || c.Next != 3 || c.LastError != "503 from siem" || !c.LastSuccess.Equal(t0) {
				t.Fatalf("restored forward cursor %+v (%v), want siem at 3", c, err)
			}
			// Every backup's checkpoint is kept, beside the source's own.
			for _, b := range res.Backups {
				if _, err := dst.CheckpointAt(ctx, b.Checkpoint.Size); err != nil {
					t.Fatalf("the checkpoint of the backup of %d events: %v", b.Checkpoint.Size, err)
				}
			}
			// New records continue after every id the source gave, even a
			// deleted or purged one's.
			id, err := dst.InsertActivity(ctx, storage.Activity{Platform: "p", ActionType: "a", Timestamp: t0})
			if err != nil || id != 8 {
				t.Fatalf("new record id %d (%v): want 8: after every id the source gave, the purged 7 too", id, err)
			}
			// The restored log goes on: a new event, a new checkpoint that extends the backups'.
			if _, _, err := dst.SignCheckpoint(ctx, key, time.Now()); err != nil {
				t.Fatal(err)
			}
			verifyOK(t, dst, key.VerifierKey())
		})
	}
}

// rewrite re-tars a backup (uncompressed) with each entry's content passed through fn.
func rewrite(t *testing.T, backup []byte, fn func(name string, data []byte) []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(backup))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		data = fn(h.Name, data)
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(data) //nolint:errcheck // into memory
	}
	tw.Close()
	return out.Bytes()
}

// inEvents applies fn to the lines of the first events file.
func inEvents(fn func(lines [][]byte) [][]byte) func(string, []byte) []byte {
	return func(name string, data []byte) []byte {
		if name != "events/00000000.ndjson" {
			return data
		}
		lines := bytes.SplitAfter(data, []byte("\n"))
		lines = lines[:len(lines)-1] // after the last newline
		return bytes.Join(fn(lines), nil)
	}
}

func TestRestoreRefusesBadBackupsWritingNothing(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, u string) {
		ctx := context.Background()
		key := testKey(t, "mirror.test")
		src := storagetest.Open(t, u)
		archiveHistory(t, src)
		full := backup(t, src, key, nil)
		moreHistory(t, src)
		inc := backup(t, src, key, full)

		otherKey := testKey(t, "mirror.test")
		other := storagetest.Open(t, storagetest.URL(t, "sqlite"))
		archiveHistory(t, other)
		foreign := backup(t, other, otherKey, nil)
		moreHistory(t, other)
		foreignInc := backup(t, other, otherKey, foreign)

		var ee *integrity.EventError
		eventAt := func(i int64, kind error) func(error) bool {
			return func(err error) bool { return errors.As(err, &ee) && ee.Index == i && errors.Is(err, kind) }
		}
		is := func(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }
		for _, c := range []struct {
			name    string
			files   [][]byte
			key     string
			refused func(error) bool
		}{
			{"an altered record", [][]byte{rewrite(t, full, inEvents(func(l [][]byte) [][]byte {
				l[2] = bytes.Replace(l[2], []byte(`"username":"啊啊啊"`), []byte(`"username":"mallory"`), 1)
				return l
			}))}, "", eventAt(2, integrity.ErrMismatch)},
			{"two events swapped", [][]byte{rewrite(t, full, inEvents(func(l [][]byte) [][]byte {
				l[3], l[4] = l[4], l[3]
				return l
			}))}, "", eventAt(3, integrity.ErrMismatch)},
			{"the last events cut off", [][]byte{rewrite(t, full, inEvents(func(l [][]byte) [][]byte { return l[:len(l)-2] }))},
				"", eventAt(int64(bytes.Count(rewrite(t, full, func(_ string, d []byte) []byte { return d }), []byte(`"index":`))-2), integrity.ErrTruncated)},
			{"the file cut short", [][]byte{full[:len(full)/2]}, "", func(err error) bool { return err != nil }},
			{"altered sync state", [][]byte{rewrite(t, full, func(name string, data []byte) []byte {
				if strings.HasPrefix(name, "state/") {
					return bytes.Replace(data, []byte(`"known outage"`), []byte(`"no outage"`), 1)
				}
				return data
			})}, "", is(integrity.ErrMismatch)},
			{"another mirror's backup", [][]byte{foreign}, key.VerifierKey(), is(integrity.ErrSignature)},
			{"another mirror's incremental", [][]byte{full, foreignInc}, "", is(integrity.ErrSignature)},
			{"an incremental without its full backup", [][]byte{inc}, "", func(err error) bool { return err != nil && strings.Contains(err.Error(), "full backup first") }},
			{"the full backup twice", [][]byte{full, full}, "", is(integrity.ErrNotPrefix)},
		} {
			t.Run(c.name, func(t *testing.T) {
				dst := storagetest.Open(t, storagetest.URL(t, dialectOf(u)))
				_, err := dst.Restore(ctx, readers(c.files...), storage.RestoreOptions{Key: c.key})
				if !c.refused(err) {
					t.Fatalf("restore: %v", err)
				}
				head, _ := dst.Head(ctx)
				n, _ := dst.CountActivities(ctx, storage.Filter{})
				states, _ := dst.SyncStates(ctx)
				holds, _ := dst.ListHolds(ctx)
				if head.Size != 0 || n != 0 || len(states) != 0 || len(holds) != 0 {
					t.Fatalf("a refused restore wrote: %d events, %d records, %d sync states, %d holds", head.Size, n, len(states), len(holds))
				}
			})
		}

		// A database that holds anything is not a restore target.
		if _, err := src.Restore(ctx, readers(full), storage.RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("restore into a non-empty database: %v", err)
		}
	})
}

func dialectOf(databaseURL string) string {
	if strings.HasPrefix(databaseURL, "sqlite:") {
		return "sqlite"
	}
	return "postgres"
}

// TestBackupWhileWritesGoOn: backups taken while a sync writes records and
// sync state are each one snapshot: the chain restores (every root equals
// its signed checkpoint, the state its seal) into the same archive.
func TestBackupWhileWritesGoOn(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		ctx := context.Background()
		key := testKey(t, "mirror.test")
		src := storagetest.Open(t, dbURL)
		archiveHistory(t, src)
		stop, done := make(chan struct{}), make(chan error)
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				at := t0.Add(time.Duration(i) * time.Minute)
				batch := []storage.Activity{mirrored(fmt.Sprint(1000+2*i), at, "w"), mirrored(fmt.Sprint(1001+2*i), at, "w")}
				if _, err := src.UpsertMirrored(ctx, batch); err != nil {
					done <- err
					return
				}
				if err := src.CommitWindow(ctx, storage.WindowCommit{Workspace: "10074561", Window: storage.Interval{Start: at, End: at.Add(time.Minute)},
					Covered: []storage.Interval{{Start: at, End: at.Add(time.Minute)}}}); err != nil {
					done <- err
					return
				}
			}
		}()
		// Each backup starts once the writer has added to the log since the
		// last one began (backups on PostgreSQL can outpace one batch).
		seen := int64(0)
		var chain [][]byte
		for len(chain) < 3 {
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
				head, err := src.Head(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if head.Size > seen {
					seen = head.Size
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the writer added nothing for a minute")
				}
			}
			var earlier []byte
			if len(chain) > 0 {
				earlier = chain[len(chain)-1]
			}
			chain = append(chain, backup(t, src, key, earlier))
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatalf("writing beside the backups: %v", err)
		}
		chain = append(chain, backup(t, src, key, chain[len(chain)-1])) // what came after

		dst := storagetest.Open(t, storagetest.URL(t, dialectOf(dbURL)))
		res, err := dst.Restore(ctx, readers(chain...), storage.RestoreOptions{Key: key.VerifierKey()})
		if err != nil {
			t.Fatalf("restoring backups taken during writes: %v", err)
		}
		grew := 0
		for i := 1; i < 3; i++ {
			if res.Backups[i].Events > 0 {
				grew++
			}
		}
		if grew == 0 {
			t.Fatalf("no backup taken during the writes holds any of them: the test did not test it (%+v)", res.Backups)
		}
		if want, got := archiveView(t, src, key), archiveView(t, dst, key); got != want {
			t.Fatalf("restored archive differs:\n--- source\n%s\n--- restored\n%s", want, got)
		}
	})
}
