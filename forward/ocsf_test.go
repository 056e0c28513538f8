package forward_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// TestOCSFMapsEventsToAPIActivity: format ocsf writes OCSF API Activity
// (6003) objects with the README's field table, for records, deletions
// and holds alike.
func TestOCSFMapsEventsToAPIActivity(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 2) // 2 downloads, bob's login, its delete, a hold
		size := headSize(t, s)
		dir := t.TempDir()
		fw, err := forward.New(fast(forward.Options{Store: s, Destinations: []config.Forward{
			{Name: "lake", Kind: "file", Path: dir, Format: "ocsf"}}}))
		if err != nil {
			t.Fatal(err)
		}
		stop := start(fw)
		waitFor(t, "delivered", func() bool { st, _ := fw.Status(context.Background()); return st[0].Cursor == size })
		stop()
		names, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
		var objs []map[string]any
		for _, n := range names {
			f, err := os.Open(n)
			if err != nil {
				t.Fatal(err)
			}
			for sc := bufio.NewScanner(f); sc.Scan(); {
				var o map[string]any
				if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
					t.Fatal(err)
				}
				objs = append(objs, o)
			}
			f.Close()
		}
		if int64(len(objs)) != size {
			t.Fatalf("%d objects, want %d", len(objs), size)
		}
		at := func(o map[string]any, path ...string) any {
			var v any = o
			for _, p := range path {
				m, _ := v.(map[string]any)
				v = m[p]
			}
			return v
		}
		for i, o := range objs {
			if at(o, "class_uid") != 6003.0 || at(o, "category_uid") != 6.0 || at(o, "metadata", "sequence") != float64(i) ||
				at(o, "type_uid") != 600300+at(o, "activity_id").(float64) || at(o, "metadata", "product", "name") != "tapd-mirror" {
				t.Errorf("object %d: %v", i, o)
			}
		}
		dl := objs[0]
		if at(dl, "activity_id") != 2.0 || at(dl, "actor", "user", "name") != "alice" || at(dl, "api", "operation") != "download" ||
			at(dl, "src_endpoint", "ip") != "10.0.0.7" || at(dl, "http_request", "user_agent") != "Mozilla/5.0" ||
			at(dl, "time") != 1_700_000_000_000.0 || at(dl, "api", "request", "uid") != "1000" ||
			at(dl, "unmapped", "serial") != "proj-1" || at(dl, "message") != "附件: spec.pdf" {
			t.Errorf("download: %v", dl)
		}
		if r := dl["resources"].([]any)[0].(map[string]any); r["name"] != "spec-0.pdf" || r["type"] != "附件" || r["uid"] != "attachment" {
			t.Errorf("download resource %v", r)
		}
		del, hold := objs[size-2], objs[size-1]
		if at(del, "activity_id") != 4.0 || at(del, "api", "operation") != "delete" || at(del, "unmapped", "prev") == nil {
			t.Errorf("delete: %v", del)
		}
		if at(hold, "activity_id") != 99.0 || at(hold, "api", "operation") != "hold" || at(hold, "message") != "litigation" || at(hold, "actor", "user", "name") != "admin" {
			t.Errorf("hold: %v", hold)
		}
	})
}
