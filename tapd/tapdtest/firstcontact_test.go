package tapdtest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

func TestPenaltyRefusesEverythingForItsDuration(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 1, RecordsPerDay: 1})
	defer f.Close()
	ws := f.Projects()[0].ID
	q := window(ws, "2026-11-25 10:00", "2026-11-25 11:00")
	f.SetPenalty(5 * time.Minute)
	f.RateLimitStorm(1, false)
	statuses := func() (out []int) {
		for _, step := range []time.Duration{0, 0, 4*time.Minute + 59*time.Second, time.Second} {
			f.Advance(step)
			code, _, _ := call(t, f, q)
			out = append(out, code)
		}
		return out
	}
	if got := statuses(); got[0] != 429 || got[1] != 429 || got[2] != 429 || got[3] != 200 {
		t.Fatalf("statuses %v: want the 429, refusals until 5m have passed, then 200", got)
	}
	reqs := f.Requests()
	if reqs[0].Fault != string(tapdtest.FaultRateLimit) || reqs[1].Fault != string(tapdtest.FaultPenalty) {
		t.Fatalf("faults %q %q, want rate-limit then penalty", reqs[0].Fault, reqs[1].Fault)
	}
}

func TestQuotaHeaders(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 1, RecordsPerDay: 1})
	defer f.Close()
	f.SetQuotaHeaders(3, time.Minute, true)
	req := func() (int, http.Header) {
		r, _ := http.NewRequest("GET", f.URL+"/workspaces/member_activity_log?"+window(f.Projects()[0].ID, "2026-11-25 10:00", "2026-11-25 11:00").Encode(), nil)
		r.SetBasicAuth(f.Credentials())
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	for i, want := range []string{"2", "1", "0"} {
		code, h := req()
		if code != 200 || h.Get("X-RateLimit-Limit") != "3" || h.Get("X-RateLimit-Remaining") != want || h.Get("X-RateLimit-Reset") != "60" {
			t.Fatalf("request %d: %d %v", i+1, code, h)
		}
	}
	if code, _ := req(); code != 429 {
		t.Fatalf("request beyond the quota: %d, want 429", code)
	}
	f.Advance(time.Minute)
	if code, h := req(); code != 200 || h.Get("X-RateLimit-Remaining") != "2" {
		t.Fatalf("next window: %d %v", code, h)
	}
}

func TestFirstContactShapes(t *testing.T) {
	t.Run("horizon wording", func(t *testing.T) {
		f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 8, RecordsPerDay: 1, HorizonError: "start_time out of range"})
		defer f.Close()
		code, body, _ := call(t, f, window(f.Projects()[0].ID, "2026-04-01 00:00", "2026-04-02 00:00"))
		if code != 422 || !strings.Contains(body, "start_time out of range") {
			t.Fatalf("%d %s", code, body)
		}
	})
	t.Run("PHP empty pages", func(t *testing.T) {
		for shape, want := range map[tapdtest.PHPEmpty]string{
			tapdtest.EmptyDataList: `"data":[]`, tapdtest.EmptyDataObject: `"data":{}`,
			tapdtest.EmptyRecordsNull: `"records":null`, tapdtest.EmptyRecordsObject: `"records":{}`,
		} {
			f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 1, RecordsPerDay: 1, PHPEmpty: shape})
			_, body, _ := call(t, f, window(f.Projects()[0].ID, "2026-11-25 11:58", "2026-11-25 11:58"))
			f.Close()
			if !strings.Contains(body, want) || (shape == tapdtest.EmptyRecordsNull && !strings.Contains(body, `"operate_types":[]`)) {
				t.Fatalf("%s: %s", shape, body)
			}
		}
	})
	t.Run("capture's project list", func(t *testing.T) {
		f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 1, RecordsPerDay: 1, CaptureProjectList: true})
		defer f.Close()
		f.SetProjectStatus(f.Projects()[0].ID, "closed")
		r, _ := http.NewRequest("GET", f.URL+"/workspaces/projects?company_id="+f.CompanyID(), nil)
		r.SetBasicAuth(f.Credentials())
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(raw)
		if strings.Contains(body, "category") || !strings.Contains(body, `"id":"`+f.CompanyID()+`"`) ||
			!strings.Contains(body, `"status":"closed"`) || !strings.Contains(body, `"member_count":3`) {
			t.Fatalf("projects %s", body)
		}
	})
	t.Run("greeting without credentials, request ids", func(t *testing.T) {
		f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 1, RecordsPerDay: 1})
		defer f.Close()
		resp, err := http.Get(f.URL + "/v2/workspaces/member_activity_log")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		id := f.Requests()[0].RequestID
		if resp.StatusCode != 200 || !strings.Contains(string(raw), `"data":"Hello world from TAPD API`) || id == "" ||
			!strings.Contains(string(raw), `"meta":{"request_id":"`+id+`"}`) {
			t.Fatalf("%d %s (request id %q)", resp.StatusCode, raw, id)
		}
	})
}
