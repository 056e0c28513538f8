package syncer

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd"
)

func TestBytesPostgreSQLRefusesAreNormalizedAndKeptRaw(t *testing.T) {
	rec := tapd.Record{ID: "1", Created: time.Date(2026, 6, 1, 8, 0, 5, 0, sh), CreatedRaw: "2026-06-01 08:00:05",
		Creator: "bad\x00user", Title: "a\x00b\xffc", OperateType: "新增", OperateObject: "迭代", URL: "10074561/x"}
	a := normalize(rec, labelIndex{types: map[string]string{"新增": "add"}, objects: map[string]string{"迭代": "iteration"}},
		Target{Key: "10074561", WorkspaceID: "10074561"})
	if a.Username != "baduser" || a.ActionDetail != "迭代: ab\uFFFDc" || a.ActionType != "add" {
		t.Fatalf("normalized %+v", a)
	}
	x := a.Extra
	if x["title"] != "ab\uFFFDc" || x["title_raw"] != `"a\x00b\xffc"` || x["creator_raw"] != `"bad\x00user"` || x["created"] != "2026-06-01 08:00:05" {
		t.Fatalf("extra %v", x)
	}
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		if _, err := s.UpsertMirrored(context.Background(), []storage.Activity{a}); err != nil {
			t.Fatalf("storing a normalized record: %v", err)
		}
		got, _ := s.ListActivities(context.Background(), storage.Filter{}, 1, 0)
		if len(got) != 1 || !strings.Contains(got[0].ExtraFields()["title_raw"], `\x00`) {
			t.Fatalf("stored %+v", got)
		}
	})
}
