package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// TestAlertsListPagesNewestFirst: GET /api/v1/alerts serves the stored
// firings with their deliveries, newest first, keyset paged by before,
// filtered by rule; it needs a token once tokens are configured, and bad
// parameters are a clear 400.
func TestAlertsListPagesNewestFirst(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		at := time.Unix(1_780_000_000, 0).UTC()
		var fs []storage.AlertFiring
		for i := range 5 {
			rule := "bulk-download"
			if i%2 == 1 {
				rule = "new-ip"
			}
			fs = append(fs, storage.AlertFiring{Rule: rule, Key: fmt.Sprintf("user%d", i), Condition: "threshold",
				WindowStart: at, WindowEnd: at.Add(time.Hour), Count: 100 + int64(i), FirstRecordID: 10, LastRecordID: 20,
				LogIndex: int64(i), FiredAt: at.Add(2 * time.Hour), Search: "action=download&user=user" + fmt.Sprint(i),
				Deliveries: []storage.AlertDelivery{{Notifier: "ops"}}})
		}
		stored, err := s.CommitAlerts(ctx, storage.AlertCommit{Firings: fs, Cursors: map[string]int64{"bulk-download": 5}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RecordAlertDelivery(ctx, "ops", []int64{stored[0].ID, stored[1].ID}, true, "", at.Add(3*time.Hour)); err != nil {
			t.Fatal(err)
		}
		c := newServer(t, s, token)
		c.expect("GET", "/api/v1/alerts", "", false, 401, `{"code":401,"message":"reading alert firings needs a token of scope read; send 'Authorization: Bearer <token>'","data":null}`)
		status, body := c.do("GET", "/api/v1/alerts?limit=2", "", true)
		var page struct {
			Data struct {
				Firings []struct {
					ID         int64  `json:"id"`
					Rule       string `json:"rule"`
					Key        string `json:"key"`
					Count      int64  `json:"count"`
					Deliveries []struct {
						Notifier, Status string
						SentAt           *int64 `json:"sent_at"`
						Grouped          int
					} `json:"deliveries"`
				} `json:"firings"`
				NextBefore *int64 `json:"next_before"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil || status != 200 {
			t.Fatalf("%d %s", status, body)
		}
		if f := page.Data.Firings; len(f) != 2 || f[0].ID != stored[4].ID || f[1].ID != stored[3].ID || page.Data.NextBefore == nil || *page.Data.NextBefore != stored[3].ID {
			t.Fatalf("first page %s", body)
		}
		if d := page.Data.Firings[0].Deliveries; len(d) != 1 || d[0].Status != "pending" || d[0].SentAt != nil {
			t.Fatalf("pending delivery %+v", d)
		}
		_, body = c.do("GET", fmt.Sprintf("/api/v1/alerts?limit=2&before=%d", *page.Data.NextBefore), "", true)
		if !strings.Contains(body, fmt.Sprintf(`"id":%d,`, stored[2].ID)) || !strings.Contains(body, fmt.Sprintf(`"next_before":%d`, stored[1].ID)) {
			t.Fatalf("second page %s", body)
		}
		_, body = c.do("GET", fmt.Sprintf("/api/v1/alerts?before=%d", stored[1].ID), "", true)
		if !strings.Contains(body, `"key":"user0"`) || !strings.Contains(body, `"status":"sent"`) || !strings.Contains(body, `"sent_at":1780010800,"grouped":2`) ||
			!strings.Contains(body, `"next_before":null`) {
			t.Fatalf("last page %s", body)
		}
		_, body = c.do("GET", "/api/v1/alerts?rule=new-ip", "", true)
		if strings.Count(body, `"rule":"new-ip"`) != 2 || strings.Contains(body, "bulk-download") {
			t.Fatalf("rule filter %s", body)
		}
		c.expect("GET", "/api/v1/alerts?limit=0", "", true, 400, `{"code":400,"message":"parameter limit must be between 1 and 1000, got 0","data":null}`)
		c.expect("GET", "/api/v1/alerts?before=x", "", true, 400, `{"code":400,"message":"parameter before must be an integer, got \"x\"","data":null}`)
		c.expect("GET", "/api/v1/alerts?rules=a", "", true, 400, `{"code":400,"message":"unknown parameter(s) rules; allowed: rule, before, limit","data":null}`)
		c.expect("POST", "/api/v1/alerts", "", true, 405, `{"code":405,"message":"method POST is not allowed on /api/v1/alerts (allowed: GET)","data":null}`)
	})
}
