package api_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

var base = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// seed stores n mirrored records; timestamps repeat so ties are broken by id.
func seed(t *testing.T, s *storage.Store, n int) {
	t.Helper()
	batch := make([]storage.Activity, n)
	for i := range batch {
		batch[i] = storage.Activity{Platform: "tapd", Serial: fmt.Sprint(10074561 + i%3), ActionType: "add",
			ActionDetail: fmt.Sprintf("需求: \"引号\", 逗号\n换行 #%d", i), Username: "李雷 🚀",
			Timestamp: base.Add(time.Duration(i/4) * time.Minute), Source: storage.SourceTAPD,
			SourceID: strconv.Itoa(9000000 + i), WorkspaceID: "10074561", Extra: map[string]string{"ip": "10.0.0.1"}}
	}
	if _, err := s.UpsertMirrored(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
}

func TestKeysetPagingVisitsEveryRowOnceUnderInserts(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		seed(t, s, 400)
		c := newServer(t, s, token)
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // a writer keeps adding newer records while we walk
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				s.InsertActivity(context.Background(), storage.Activity{Platform: "live", ActionType: "post", Timestamp: base.AddDate(1, 0, 0)})
				time.Sleep(time.Millisecond)
			}
		}()
		seen := map[int64]int{}
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("cursor never ended")
			}
			code, body := c.do("GET", "/api/v1/activity_log?source=tapd&limit=37&cursor="+url.QueryEscape(cursor), "", false)
			var page struct {
				Data       []struct{ ID int64 } `json:"data"`
				NextCursor *string              `json:"next_cursor"`
			}
			if code != 200 || json.Unmarshal([]byte(body), &page) != nil {
				t.Fatalf("page %d: %d %s", pages, code, body)
			}
			for _, r := range page.Data {
				seen[r.ID]++
			}
			if page.NextCursor == nil {
				break
			}
			cursor = *page.NextCursor
		}
		stop()
		wg.Wait()
		if len(seen) != 400 {
			t.Fatalf("visited %d distinct rows, want 400", len(seen))
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("row %d visited %d times", id, n)
			}
		}
		for _, bad := range []string{"cursor=zzz", "cursor=&offset=5"} {
			if code, _ := c.do("GET", "/api/v1/activity_log?"+bad, "", false); code != 400 {
				t.Fatalf("%s = %d, want 400", bad, code)
			}
		}
	})
}

func TestDetailAddsProvenanceOnlyOnRequest(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		seed(t, s, 1)
		c := newServer(t, s, token)
		_, plain := c.do("GET", "/api/v1/activity_log", "", false)
		if strings.Contains(plain, "source") || strings.Contains(plain, "next_cursor") {
			t.Fatalf("contract shape changed: %s", plain)
		}
		if code, body := c.do("GET", "/api/v1/activity_log?detail=1", "", false); code != 401 {
			t.Fatalf("detail without a token, one being configured = %d %s", code, body)
		}
		_, detail := c.do("GET", "/api/v1/activity_log?detail=1", "", true)
		for _, want := range []string{`"source":"tapd"`, `"source_id":"9000000"`, `"extra":{"ip":"10.0.0.1"}`, `"workspace_id":"10074561"`} {
			if !strings.Contains(detail, want) {
				t.Fatalf("detail lacks %s: %s", want, detail)
			}
		}
		if code, _ := c.do("GET", "/api/v1/activity_log?detail=yes", "", true); code != 400 {
			t.Fatal("detail=yes accepted")
		}
	})
}

// streamRecorder is a ResponseWriter that remembers how the body arrived.
type streamRecorder struct {
	*httptest.ResponseRecorder
	maxWrite, flushes int
}

func (r *streamRecorder) Write(p []byte) (int, error) {
	r.maxWrite = max(r.maxWrite, len(p))
	return r.ResponseRecorder.Write(p)
}

func (r *streamRecorder) Flush() { r.flushes++; r.ResponseRecorder.Flush() }

func TestExportStreamsEveryRow(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		const n = 3000
		seed(t, s, n)
		want, err := s.ListActivities(context.Background(), storage.Filter{}, n, 0)
		if err != nil {
			t.Fatal(err)
		}
		h := newAPI(t, api.Options{Store: s, Tokens: adminOnly(token)}).Handler()
		export := func(format string) *streamRecorder {
			req := httptest.NewRequest("GET", "http://localhost/api/v1/activity_log/export?format="+format, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			rec := &streamRecorder{ResponseRecorder: httptest.NewRecorder()}
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				t.Fatalf("export %s = %d %s", format, rec.Code, rec.Body.String())
			}
			// Streamed: flushed as it goes, never one write of the whole body.
			if rec.flushes < n/500 || rec.maxWrite > 128<<10 || rec.Body.Len() < 4*rec.maxWrite {
				t.Fatalf("export %s not streamed: %d flushes, largest write %d of %d bytes", format, rec.flushes, rec.maxWrite, rec.Body.Len())
			}
			return rec
		}
		rows, err := csv.NewReader(export("csv").Body).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != n+1 || strings.Join(rows[0], ",") != "id,platform,serial,action_type,action_detail,username,timestamp,time,source,source_id,workspace_id,extra" {
			t.Fatalf("csv has %d rows, header %v", len(rows), rows[0])
		}
		for i, row := range rows[1:] {
			a := want[n-1-i] // the list is newest first, the export oldest first
			if row[0] != strconv.FormatInt(a.ID, 10) || row[4] != a.ActionDetail || row[5] != a.Username ||
				row[6] != strconv.FormatInt(a.Timestamp.Unix(), 10) || row[9] != a.SourceID || row[11] != `{"ip":"10.0.0.1"}` {
				t.Fatalf("csv row %d = %q, want %+v", i, row, a)
			}
		}
		sc := bufio.NewScanner(export("ndjson").Body)
		i := 0
		for ; sc.Scan(); i++ {
			var got struct {
				ID           int64  `json:"id"`
				ActionDetail string `json:"action_detail"`
				SourceID     string `json:"source_id"`
			}
			if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
				t.Fatalf("ndjson line %d: %v", i, err)
			}
			if a := want[n-1-i]; got.ID != a.ID || got.ActionDetail != a.ActionDetail || got.SourceID != a.SourceID {
				t.Fatalf("ndjson line %d = %+v", i, got)
			}
		}
		if i != n {
			t.Fatalf("ndjson has %d lines, want %d", i, n)
		}
		req := httptest.NewRequest("GET", "http://localhost/api/v1/activity_log/export", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("export without token = %d", rec.Code)
		}
	})
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		m := api.NewMetrics(nil)
		srv := httptest.NewServer(newAPI(t, api.Options{Store: s, Metrics: m}).Handler())
		defer srv.Close()
		c := client{t: t, base: srv.URL}
		c.expect("GET", "/healthz", "", false, 200, `{"code":0,"message":"success","data":{"status":"ok"}}`)
		c.expect("GET", "/readyz", "", false, 200, `{"code":0,"message":"success","data":{"status":"ready"}}`)
		c.do("GET", "/api/v1/activity_log/count", "", false)
		c.do("GET", "/api/v1/activity_log?limit=0", "", false)
		_, body := c.do("GET", "/metrics", "", false)
		for _, want := range []string{
			`tapdmirror_http_requests_total{code="200",route="GET /api/v1/activity_log/count"} 1`,
			`tapdmirror_http_requests_total{code="400",route="GET /api/v1/activity_log"} 1`,
			`tapdmirror_http_request_duration_seconds_bucket`,
		} {
			if !strings.Contains(body, want) {
				t.Fatalf("metrics lack %s:\n%.2000s", want, body)
			}
		}
		s.Close()
		status, body := c.do("GET", "/readyz", "", false)
		if status != 503 || !strings.Contains(body, "database unreachable") {
			t.Fatalf("readyz with a closed database = %d %s", status, body)
		}
	})
}
