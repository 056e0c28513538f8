package api_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// The console's filters are API parameters too, on list, count and export alike.
func TestObjectIPAndTextFilters(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		rec := func(id, detail, ip, object string, minute int) storage.Activity {
			return storage.Activity{Platform: "tapd", Serial: "100", ActionType: "download", ActionDetail: detail,
				Username: "alice", Timestamp: base.Add(time.Duration(minute) * time.Minute), Source: storage.SourceTAPD,
				SourceID: id, WorkspaceID: "100", Extra: map[string]string{"ip": ip, "operate_object_key": object}}
		}
		if _, err := s.UpsertMirrored(ctx, []storage.Activity{
			rec("1", "附件: Q3 contract.pdf", "10.1.1.1", "attachment", 0),
			rec("2", "附件: invoice", "10.1.1.2", "attachment", 1),
			rec("3", "需求: contract review", "10.1.1.1", "story", 2),
		}); err != nil {
			t.Fatal(err)
		}
		c := newServer(t, s, token)
		for _, tc := range []struct {
			query string
			want  []string // source ids, newest first
		}{
			{"object=attachment", []string{"2", "1"}},
			{"ip=10.1.1.1", []string{"3", "1"}},
			{"q=CONTRACT", []string{"3", "1"}},
			{"q=contract&object=attachment", []string{"1"}},
			{"q=" + url.QueryEscape("附件"), []string{"2", "1"}},
			{"q=nothing&ip=10.1.1.1", nil},
		} {
			status, body := c.do("GET", "/api/v1/activity_log?detail=1&limit=1&cursor=&"+tc.query, "", true)
			var page struct {
				Data []struct {
					SourceID string `json:"source_id"`
				} `json:"data"`
				NextCursor *string `json:"next_cursor"`
			}
			if status != 200 || json.Unmarshal([]byte(body), &page) != nil {
				t.Fatalf("%s: %d %s", tc.query, status, body)
			}
			var got []string
			for _, d := range page.Data {
				got = append(got, d.SourceID)
			}
			if page.NextCursor != nil { // the cursor keeps the filters' order
				_, body = c.do("GET", "/api/v1/activity_log?detail=1&limit=5&cursor="+url.QueryEscape(*page.NextCursor)+"&"+tc.query, "", true)
				json.Unmarshal([]byte(body), &page)
				for _, d := range page.Data {
					got = append(got, d.SourceID)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("list %s = %v, want %v", tc.query, got, tc.want)
			}
			c.expect("GET", "/api/v1/activity_log/count?"+tc.query, "", true, 200,
				`{"code":0,"message":"success","data":{"count":`+strconv.Itoa(len(tc.want))+`}}`)
			status, body = c.do("GET", "/api/v1/activity_log/export?format=csv&"+tc.query, "", true)
			rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
			if status != 200 || err != nil || len(rows) != len(tc.want)+1 {
				t.Errorf("export %s = %d, %d rows, %v", tc.query, status, len(rows), err)
			}
		}
		c.expect("GET", "/api/v1/activity_log/count?q="+strings.Repeat("长", 201), "", false, 400,
			`{"code":400,"message":"parameter q must be at most 200 characters, got 201","data":null}`)
	})
}
