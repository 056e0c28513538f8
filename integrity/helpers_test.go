package integrity

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testRecord is a mirrored record as the syncer would store it.
func testRecord(id int64) Record {
	return Record{
		ID: id, Platform: "tapd", Serial: "10074561", ActionType: "add",
		ActionDetail: fmt.Sprintf("迭代: batch_create_%d", id), Username: "张三",
		Timestamp: t0.Add(time.Duration(id) * time.Minute), Source: "tapd",
		SourceID: fmt.Sprint(1100000000 + id), WorkspaceID: "10074561",
		Extra: map[string]string{
			"ip": "10.0.0.1", "ua": "Mozilla/5.0", "url": "/10074561/prong/iterations/view/" + fmt.Sprint(id),
			"project_name": "演示项目", "operate_object": "迭代", "action": "创建", "title": "batch_create",
		},
		IngestedAt: t0.Add(time.Duration(id)*time.Minute + time.Hour),
	}
}

// testEvents is a deterministic history of n events of every kind; event i
// refers only to earlier events.
func testEvents(n int) []Event {
	evs := make([]Event, 0, n)
	lastOf := map[int64]int64{} // record id → its latest event
	var nextID, holds int64
	for i := int64(0); i < int64(n); i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		var e Event
		switch {
		case i%11 == 10 && len(lastOf) > 0:
			id := (i*7)%nextID + 1
			if prev, ok := lastOf[id]; ok {
				r := testRecord(id)
				r.ActionDetail += " (renamed)"
				r.IngestedAt = at
				e = UpdateEvent(prev, r)
			}
		case i%13 == 12 && len(lastOf) > 0:
			id := (i*5)%nextID + 1
			if prev, ok := lastOf[id]; ok {
				e = DeleteEvent(id, prev, "admin", at)
				delete(lastOf, id)
			}
		case i%17 == 16 && len(lastOf) > 0:
			id := (i*3)%nextID + 1
			if prev, ok := lastOf[id]; ok {
				e = PurgeEvent(id, prev, "older-than-5y", at)
				delete(lastOf, id)
			}
		case i%19 == 18:
			holds++
			h := Hold{ID: holds, Name: "case-" + fmt.Sprint(holds), Reason: "litigation", Filter: `{"username":"张三"}`}
			e = HoldEvent(h, "compliance", at)
		case i%23 == 22 && holds > 0:
			e = ReleaseEvent(Hold{ID: holds, Name: "case-" + fmt.Sprint(holds), Reason: "settled"}, "compliance", at)
		case i%29 == 28:
			e = AccessEvent(Access{ID: i, Principal: "auditor", SourceIP: "10.0.0.9", Action: "export",
				Params: map[string]string{"format": "ndjson", "username": "张三"}, Rows: i, Outcome: "ok"}, at)
		}
		if e.Kind == "" {
			nextID++
			r := testRecord(nextID)
			r.IngestedAt = at
			e = RecordEvent(r)
		}
		if e.Kind == KindRecord || e.Kind == KindUpdate {
			lastOf[e.Record.ID] = i
		}
		evs = append(evs, e)
	}
	return evs
}

// testLog appends events to a fresh log and returns its hashes and a key.
func testLog(t testing.TB, evs []Event) (*MemoryStore, []tlog.Hash) {
	t.Helper()
	st := &MemoryStore{}
	leaves := make([]tlog.Hash, len(evs))
	for i, e := range evs {
		enc, err := EncodeEvent(e)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		leaves[i] = LeafHash(enc)
	}
	if _, err := AppendTo(st, 0, leaves); err != nil {
		t.Fatal(err)
	}
	return st, leaves
}

// signAt signs the checkpoint of the first size leaves held in st.
func signAt(t testing.TB, k *Key, st tlog.HashReader, size int64) []byte {
	t.Helper()
	root, err := TreeHash(size, st)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := k.Sign(Checkpoint{Size: size, Root: root, Time: t0.Add(48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// fullBundle writes a full bundle of evs, optionally withholding some.
func fullBundle(t testing.TB, k *Key, evs []Event, chunk int, withhold map[int64]bool) []byte {
	t.Helper()
	st, leaves := testLog(t, evs)
	var buf bytes.Buffer
	w, err := NewBundleWriter(&buf, signAt(t, k, st, int64(len(evs))), k.VerifierKey(), BundleOptions{Hashes: st, ChunkSize: chunk})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if withhold[int64(i)] {
			err = w.AddWithheld(int64(i), e.Kind, e.Subject(), leaves[i])
		} else {
			err = w.Add(int64(i), e)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarEntry is one file of a bundle.
type tarEntry struct {
	name string
	data []byte
}

func readTar(t testing.TB, b []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		out = append(out, tarEntry{h.Name, data})
	}
}

func writeTar(t testing.TB, es []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	return buf.Bytes()
}

// editLines rewrites a bundle's event lines (all files joined) with fn,
// putting them back into one events file.
func editLines(t testing.TB, bundle []byte, fn func(lines []string) []string) []byte {
	t.Helper()
	var head []tarEntry
	var lines []string
	for _, e := range readTar(t, bundle) {
		if strings.HasPrefix(e.name, "events/") {
			lines = append(lines, strings.SplitAfter(string(e.data), "\n")...)
			if lines[len(lines)-1] == "" {
				lines = lines[:len(lines)-1]
			}
			continue
		}
		head = append(head, e)
	}
	lines = fn(lines)
	if len(lines) > 0 {
		head = append(head, tarEntry{"events/00000000.ndjson", []byte(strings.Join(lines, ""))})
	}
	return writeTar(t, head)
}
