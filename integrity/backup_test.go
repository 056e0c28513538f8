package integrity

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// testBackup writes a backup of events [from, len(evs)) of evs, with state lines.
func testBackup(t *testing.T, k *Key, evs []Event, from int64, state ...string) []byte {
	t.Helper()
	st, _ := testLog(t, evs)
	n := int64(len(evs))
	m := BackupManifest{From: from}
	if from > 0 {
		root, err := TreeHash(from, st)
		if err != nil {
			t.Fatal(err)
		}
		m.FromRoot = &root
		if m.Consistency, err = ConsistencyProof(n, from, st); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	w, err := NewBackupWriter(&buf, k, signAt(t, k, st, n), m, st)
	if err != nil {
		t.Fatal(err)
	}
	w.events.opts.ChunkSize = 700 // many events files
	for i := from; i < n; i++ {
		if err := w.Add(i, evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range state {
		if err := w.State([]byte(l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readBackup reads a backup through, continuing tree, and returns the
// indexes of its events and its state lines.
func readBackup(b []byte, key string, tree *Frontier) (idx []int64, state []string, err error) {
	rd, err := OpenBackup(bytes.NewReader(b), key, tree, nil)
	if err != nil {
		return nil, nil, err
	}
	for {
		e, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return idx, nil, err
		}
		idx = append(idx, e.Index)
	}
	for {
		l, err := rd.NextState()
		if err == io.EOF {
			return idx, state, nil
		}
		if err != nil {
			return idx, state, err
		}
		state = append(state, string(l))
	}
}

// An incremental backup from any earlier size continues the full one: its
// first event's proof seeds the subtrees its later events' hints prove.
func TestIncrementalBackupFromEverySize(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	for n := 1; n <= 40; n++ {
		evs := testEvents(n)
		for from := int64(0); from <= int64(n); from++ {
			tree := &Frontier{}
			if from > 0 {
				if _, _, err := readBackup(testBackup(t, k, evs[:from], 0), "", tree); err != nil {
					t.Fatalf("n=%d: full backup of %d: %v", n, from, err)
				}
			}
			idx, state, err := readBackup(testBackup(t, k, evs, from, `{"a":1}`, `{"b":2}`), k.VerifierKey(), tree)
			if err != nil || int64(len(idx)) != int64(n)-from || len(state) != 2 || tree.Size() != int64(n) {
				t.Fatalf("n=%d from=%d: %d events, state %v, tree %d: %v", n, from, len(idx), state, tree.Size(), err)
			}
		}
	}
}

func TestIncrementalBackupNamesItsFirstBadEvent(t *testing.T) {
	k := testKey(t, "tapd-mirror.test")
	evs := testEvents(30)
	full := testBackup(t, k, evs[:11], 0)
	for bad := 11; bad < 30; bad++ {
		entries, altered := readTar(t, testBackup(t, k, evs, 11)), false
		for i, e := range entries {
			if strings.HasPrefix(e.name, "events/") {
				lines := strings.SplitAfter(string(e.data), "\n")
				for j, l := range lines {
					if strings.HasPrefix(l, `{"index":`+strconv.Itoa(bad)+`,`) && strings.Contains(l, "张三") {
						lines[j], altered = strings.Replace(l, "张三", "李四", 1), true
					}
				}
				entries[i].data = []byte(strings.Join(lines, ""))
			}
		}
		if !altered {
			continue // a deletion or purge: no name to alter
		}
		inc := writeTar(t, entries)
		tree := &Frontier{}
		if _, _, err := readBackup(full, "", tree); err != nil {
			t.Fatal(err)
		}
		_, _, err := readBackup(inc, "", tree)
		wantEventError(t, err, int64(bad), ErrMismatch)
	}
	// Without the full backup before it, or after another log's.
	if _, _, err := readBackup(testBackup(t, k, evs, 11), "", &Frontier{}); err == nil {
		t.Fatal("an incremental backup read without its full backup")
	}
	tree := &Frontier{}
	if _, _, err := readBackup(testBackup(t, k, testEvents(12)[1:], 0), "", tree); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readBackup(testBackup(t, k, evs, 11), "", tree); !errors.Is(err, ErrNotPrefix) {
		t.Fatalf("incremental after another log's full backup: %v", err)
	}
}

// The hand-written line is what encoding/json writes for it.
func TestAppendLineIsEncodingJSON(t *testing.T) {
	evs := testEvents(60)
	evs[3].Record.Extra["quote\"\n\u2028<&>"] = "caf\u00e9 \x01 🚀"
	for i, e := range evs {
		for _, entry := range []BundleEntry{
			{Index: int64(i), Event: e, Hints: []tlog.Hash{{1}, {2}}},
			{Index: int64(i), Event: Event{Kind: e.Kind, RecordID: e.Subject()}, Withheld: true, LeafHash: tlog.Hash{9}, Proof: []tlog.Hash{{3}}},
		} {
			var want bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(toLine(entry)); err != nil {
				t.Fatal(err)
			}
			if got := appendLine(nil, toLine(entry)); string(got) != want.String() {
				t.Fatalf("event %d:\n got %s\nwant %s", i, got, want.String())
			}
		}
	}
}
