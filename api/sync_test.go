package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

func TestSyncRunEndpoints(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		run := &storage.SyncRun{Workspace: "10074561", Trigger: "cli", Outcome: storage.OutcomeRunning,
			StartedAt: time.Unix(1764000000, 0)}
		if err := s.CreateRun(ctx, run); err != nil {
			t.Fatal(err)
		}
		run.Outcome, run.Fetched, run.Inserted, run.Warnings = storage.OutcomePartial, 12, 10, []string{"window x did not reconcile"}
		run.FinishedAt = run.StartedAt.Add(time.Minute)
		if err := s.UpdateRun(ctx, *run); err != nil {
			t.Fatal(err)
		}
		c := newServer(t, s, token)
		c.expect("GET", "/api/v1/sync/runs/1", "", true, 200,
			`{"code":0,"message":"success","data":{"id":1,"workspace":"10074561","trigger":"cli","outcome":"partial","started_at":"2025-11-24T16:00:00Z","finished_at":"2025-11-24T16:01:00Z","windows":0,"pages":0,"requests":0,"fetched":12,"inserted":10,"updated":0,"unchanged":0,"suppressed":0,"remote_total":0,"warnings":["window x did not reconcile"],"error":""}}`)
		if code, body := c.do("GET", "/api/v1/sync/runs?workspace=10074561&limit=5", "", true); code != 200 || !strings.Contains(body, `"outcome":"partial"`) {
			t.Fatalf("runs = %d %s", code, body)
		}
		c.expect("GET", "/api/v1/sync/runs?workspace=nope", "", true, 200, `{"code":0,"message":"success","data":[]}`)
		c.expect("GET", "/api/v1/sync/runs/99", "", true, 404, `{"code":404,"message":"sync run 99 not found","data":null}`)
		c.expect("GET", "/api/v1/sync/runs/x", "", true, 400, `{"code":400,"message":"run id must be a positive integer, got \"x\"","data":null}`)
		if code, _ := c.do("GET", "/api/v1/sync/runs", "", false); code != 401 {
			t.Fatalf("runs without token = %d", code)
		}
		c.expect("POST", "/api/v1/sync", "", true, 503, `{"code":503,"message":"syncing is not running in this process","data":null}`)
		open := newServer(t, s, "")
		if code, body := open.do("GET", "/api/v1/sync/runs", "", false); code != 403 || !strings.Contains(body, "TAPD_MIRROR_ADMIN_TOKEN") {
			t.Fatalf("admin endpoint with no token configured = %d %s", code, body)
		}
	})
}
