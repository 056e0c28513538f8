package forward_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// closedFiles reads the files a reader would pick up (*.ndjson), in name
// order, and checks none is partial.
func closedFiles(t *testing.T, dir string) (names []string, events []forward.Event) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	for _, n := range names {
		raw, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, parseLines(t, raw)...) // fails on a half line
	}
	return names, events
}

// TestFileRotatesBySizeAndClosesByRename: files are complete NDJSON once
// they carry the name readers glob; the one being written does not.
func TestFileRotatesBySizeAndClosesByRename(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 20)
		size := headSize(t, s)
		dir := t.TempDir()
		fw, err := forward.New(fast(forward.Options{Store: s, Destinations: []config.Forward{
			{Name: "lake", Kind: "file", Path: dir, BatchSize: 4, RotateBytes: 2000}}}))
		if err != nil {
			t.Fatal(err)
		}
		stop := start(fw)
		waitFor(t, "every event acknowledged", func() bool {
			st, err := fw.Status(context.Background())
			return err == nil && st[0].Cursor == size
		})
		// While running, whatever is not yet closed is only a .partial file.
		names, got := closedFiles(t, dir)
		if len(names) < 2 {
			t.Fatalf("%d closed files: no rotation by size", len(names))
		}
		stop() // closes the open file
		if parts, _ := filepath.Glob(filepath.Join(dir, "*.partial")); len(parts) != 0 {
			t.Fatalf("partial files left after stop: %v", parts)
		}
		names, got = closedFiles(t, dir)
		if dups := checkDelivery(t, got, size); dups != 0 {
			t.Fatalf("%d duplicates", dups)
		}
		for _, n := range names {
			if fi, err := os.Stat(n); err != nil || fi.Size() > 2000+4*1000 {
				t.Errorf("%s: %v %v: rotation ignored rotate_bytes", n, fi.Size(), err)
			}
		}
	})
}

// TestFileClosesByAgeWhileIdle: an open file is closed once rotate_age
// passes even when no event comes to trigger a write.
func TestFileClosesByAgeWhileIdle(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 2)
		size := headSize(t, s)
		dir := t.TempDir()
		now := time.Unix(1_800_000_000, 0)
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		fw, err := forward.New(fast(forward.Options{Store: s, Now: clock, Destinations: []config.Forward{
			{Name: "lake", Kind: "file", Path: dir, RotateAge: config.Duration{Duration: time.Hour}}}}))
		if err != nil {
			t.Fatal(err)
		}
		stop := start(fw)
		defer stop()
		waitFor(t, "every event acknowledged", func() bool {
			st, err := fw.Status(context.Background())
			return err == nil && st[0].Cursor == size
		})
		if names, _ := closedFiles(t, dir); len(names) != 0 {
			t.Fatalf("closed before rotate_age: %v", names)
		}
		mu.Lock()
		now = now.Add(time.Hour)
		mu.Unlock()
		waitFor(t, "the file closed by age", func() bool { names, _ := closedFiles(t, dir); return len(names) == 1 })
		_, got := closedFiles(t, dir)
		checkDelivery(t, got, size)
	})
}

// TestFileRecoversAPartialFileCutAtAHalfLine: a process killed mid-write
// leaves a .partial file ending in half a line; the next start cuts that
// line (its events were never acknowledged, so they come again) and closes
// the file.
func TestFileRecoversAPartialFileCutAtAHalfLine(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 3)
		size := headSize(t, s)
		dir := t.TempDir()
		left := filepath.Join(dir, "lake-00000000000000000000-1.ndjson.partial")
		if err := os.WriteFile(left, []byte(`{"index":0,"type":"record","time":1}`+"\n"+`{"index":1,"ty`), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "lake-00000000000000000005-2.ndjson.partial"), []byte(`{"ind`), 0o640); err != nil {
			t.Fatal(err)
		}
		fw, err := forward.New(fast(forward.Options{Store: s, Destinations: []config.Forward{{Name: "lake", Kind: "file", Path: dir}}}))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(strings.TrimSuffix(left, ".partial"))
		if err != nil || string(raw) != `{"index":0,"type":"record","time":1}`+"\n" {
			t.Fatalf("recovered file %q %v", raw, err)
		}
		if parts, _ := filepath.Glob(filepath.Join(dir, "*.partial")); len(parts) != 0 {
			t.Fatalf("partial files left: %v", parts)
		}
		stop := start(fw)
		waitFor(t, "every event acknowledged", func() bool {
			st, err := fw.Status(context.Background())
			return err == nil && st[0].Cursor == size
		})
		stop()
		_, got := closedFiles(t, dir)
		if dups := checkDelivery(t, got, size); dups != 1 {
			t.Fatalf("%d duplicates, want the one line recovered", dups)
		}
	})
}

// Destinations sharing a path keep to their own files: "lake" starting
// does not close the partial file "lake-b" is writing.
func TestFileRecoversOnlyItsOwnPartialFiles(t *testing.T) {
	dir := t.TempDir()
	theirs := filepath.Join(dir, "lake-b-00000000000000000000-1.ndjson.partial")
	if err := os.WriteFile(theirs, []byte(`{"index":0}`+"\n"+`{"ind`), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := forward.New(forward.Options{Destinations: []config.Forward{{Name: "lake", Kind: "file", Path: dir}}}); err != nil {
		t.Fatal(err)
	}
	if raw, err := os.ReadFile(theirs); err != nil || string(raw) != `{"index":0}`+"\n"+`{"ind` {
		t.Fatalf("lake-b's partial file after lake started: %q %v", raw, err)
	}
}
