package tapdtest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, tapdtest.Shanghai)

type page struct {
	Status int    `json:"status"`
	Info   string `json:"info"`
	Data   struct {
		PerPage     string `json:"perPage"`
		TotalItems  int    `json:"totalItems"`
		CurrentPage string `json:"currentPage"`
		Records     []struct {
			ID          string `json:"id"`
			Created     string `json:"created"`
			OperateType string `json:"operate_type"`
			Title       string `json:"title"`
			Creator     string `json:"creator"`
		} `json:"records"`
	} `json:"data"`
}

func call(t *testing.T, f *tapdtest.Server, params url.Values) (int, string, page) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.URL+"/workspaces/member_activity_log?"+params.Encode(), nil)
	req.SetBasicAuth(f.Credentials())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var p page
	json.Unmarshal(raw, &p)
	return resp.StatusCode, string(raw), p
}

func TestFakeSemantics(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 3, Now: now, Months: 8, RecordsPerDay: 10})
	defer f.Close()
	ws := f.Projects()[0].ID
	win := func(extra ...string) url.Values {
		v := url.Values{"workspace_id": {ws}, "start_time": {"2026-11-01 00:00"}, "end_time": {"2026-11-25 11:59"}}
		for i := 0; i < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}

	t.Run("encoding like TAPD", func(t *testing.T) {
		_, raw, p := call(t, f, win("limit", "5"))
		if !strings.Contains(raw, `"perPage":"5"`) || !strings.Contains(raw, `"currentPage":"1"`) || !strings.Contains(raw, `\/prong\/`) ||
			!strings.Contains(raw, `\u`) || strings.ContainsFunc(raw, func(r rune) bool { return r > 127 }) {
			t.Fatalf("not TAPD-encoded: %.300s", raw)
		}
		if p.Data.TotalItems == 0 || len(p.Data.Records) != 5 {
			t.Fatalf("page = %+v", p.Data)
		}
	})
	t.Run("newest first, limit capped at 200, pages disjoint", func(t *testing.T) {
		_, _, p1 := call(t, f, win("limit", "500"))
		_, _, p2 := call(t, f, win("limit", "200", "page", "2"))
		if p1.Data.PerPage != "200" || len(p1.Data.Records) != 200 {
			t.Fatalf("limit 500 gave perPage %s, %d records", p1.Data.PerPage, len(p1.Data.Records))
		}
		all := append(p1.Data.Records, p2.Data.Records...)
		for i := 1; i < len(all); i++ {
			if all[i].Created > all[i-1].Created {
				t.Fatalf("not newest first at %d: %s after %s", i, all[i].Created, all[i-1].Created)
			}
		}
		if p1.Data.Records[199].ID == p2.Data.Records[0].ID {
			t.Fatal("pages overlap")
		}
	})
	t.Run("start defaults to end minus 7 days", func(t *testing.T) {
		_, _, p := call(t, f, url.Values{"workspace_id": {ws}, "end_time": {"2026-11-20 00:00"}, "limit": {"200"}})
		_, _, q := call(t, f, url.Values{"workspace_id": {ws}, "start_time": {"2026-11-13 00:00"}, "end_time": {"2026-11-20 00:00"}, "limit": {"1"}})
		if p.Data.TotalItems != q.Data.TotalItems || p.Data.TotalItems == 0 {
			t.Fatalf("default start total %d != explicit 7 days %d", p.Data.TotalItems, q.Data.TotalItems)
		}
	})
	t.Run("company id lists its projects; company_only its own logs", func(t *testing.T) {
		_, _, all := call(t, f, url.Values{"workspace_id": {f.CompanyID()}, "start_time": {"2026-11-01 00:00"}, "end_time": {"2026-11-25 11:59"}})
		_, _, own := call(t, f, url.Values{"workspace_id": {f.CompanyID()}, "company_only": {"1"}, "start_time": {"2026-11-01 00:00"}, "end_time": {"2026-11-25 11:59"}})
		sum := 0
		for _, p := range f.Projects() {
			_, _, pp := call(t, f, url.Values{"workspace_id": {p.ID}, "start_time": {"2026-11-01 00:00"}, "end_time": {"2026-11-25 11:59"}})
			sum += pp.Data.TotalItems
		}
		if all.Data.TotalItems != sum || own.Data.TotalItems == 0 || own.Data.TotalItems >= sum {
			t.Fatalf("company total %d, sum of projects %d, company-only %d", all.Data.TotalItems, sum, own.Data.TotalItems)
		}
	})
	t.Run("filters", func(t *testing.T) {
		_, _, p := call(t, f, win("operate_type", "delete", "limit", "200"))
		for _, r := range p.Data.Records {
			if r.OperateType != "删除" {
				t.Fatalf("operate_type=delete returned %q", r.OperateType)
			}
		}
		if p.Data.TotalItems == 0 {
			t.Fatal("no deletes generated")
		}
	})
	for name, tc := range map[string]struct {
		params url.Values
		status int
		info   string
	}{
		"two months":      {win("start_time", "2026-10-31 00:00"), 422, "不能跨月"},
		"beyond horizon":  {win("start_time", "2026-05-01 00:00", "end_time", "2026-05-02 00:00"), 422, "半年"},
		"deep paging cap": {win("limit", "200", "page", "101"), 422, "20000"},
		"unknown ws":      {url.Values{"workspace_id": {"1010480"}}, 404, "workspace 1010480 not existed"},
		"missing ws":      {url.Values{}, 422, "workspace_id"},
	} {
		t.Run(name, func(t *testing.T) {
			status, _, p := call(t, f, tc.params)
			if status != tc.status || p.Status != tc.status || !strings.Contains(p.Info, tc.info) {
				t.Fatalf("got %d %+v, want %d %q", status, p, tc.status, tc.info)
			}
		})
	}
	t.Run("time travel moves the horizon", func(t *testing.T) {
		before := len(f.Queryable(ws, false))
		f.Advance(30 * 24 * time.Hour)
		if after := len(f.Queryable(ws, false)); after >= before {
			t.Fatalf("queryable %d -> %d after a month of time travel", before, after)
		}
	})
	t.Run("truth holds months beyond the window", func(t *testing.T) {
		oldest := f.Truth()[0].Created
		if !oldest.Before(f.Horizon()) {
			t.Fatalf("oldest record %v is inside the horizon %v", oldest, f.Horizon())
		}
	})
}

func TestUnknownPathGreets(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 1, RecordsPerDay: 1})
	defer f.Close()
	req, _ := http.NewRequest("GET", f.URL+"/workspace/member_activity_logs", nil)
	req.SetBasicAuth(f.Credentials())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(raw), `"status":1`) || !strings.Contains(string(raw), "Hello world") {
		t.Fatalf("got %d %s", resp.StatusCode, raw)
	}
}
