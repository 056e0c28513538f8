package tapdtest_test

import (
	"cmp"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// at parses a Shanghai wall-clock time with seconds.
func at(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04:05", s, tapdtest.Shanghai)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func window(ws, start, end string, extra ...string) url.Values {
	v := url.Values{"workspace_id": {ws}, "end_time": {end}, "limit": {"200"}}
	if start != "" {
		v.Set("start_time", start)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

func idSet(p page) map[string]bool {
	out := map[string]bool{}
	for _, r := range p.Data.Records {
		out[r.ID] = true
	}
	return out
}

func idList(p page) []string {
	var out []string
	for _, r := range p.Data.Records {
		out = append(out, r.ID)
	}
	return out
}

// newestFirst orders the fake's truth as TAPD answers: created, then id, descending.
func newestFirst(recs []tapdtest.Record) []string {
	slices.SortFunc(recs, func(a, b tapdtest.Record) int {
		ai, _ := strconv.Atoi(a.ID)
		bi, _ := strconv.Atoi(b.ID)
		return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(bi, ai))
	})
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func TestEndMinuteInclusiveOrExclusive(t *testing.T) {
	for _, exclusive := range []bool{false, true} {
		t.Run("exclusive="+strconv.FormatBool(exclusive), func(t *testing.T) {
			f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 1, RecordsPerDay: 1, EndExclusive: exclusive})
			defer f.Close()
			ws := f.Projects()[0].ID
			plant := func(s string) string { return f.AddRecord(ws, at(t, s), nil).ID }
			want := map[string]bool{
				plant("2026-11-20 09:59:59"): false, // before start
				plant("2026-11-20 10:00:00"): true,  // start is inclusive either way
				plant("2026-11-20 10:04:59"): true,
				plant("2026-11-20 10:05:00"): !exclusive, // the end minute
				plant("2026-11-20 10:05:59"): !exclusive,
				plant("2026-11-20 10:06:00"): false,
			}
			status, _, p := call(t, f, window(ws, "2026-11-20 10:00", "2026-11-20 10:05"))
			got := idSet(p)
			for id, in := range want {
				if got[id] != in {
					t.Errorf("status %d: record %s returned=%v, want %v", status, id, got[id], in)
				}
			}
		})
	}
}

func TestHorizonIsCountedInShanghai(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no tzdata for America/New_York:", err)
	}
	// A clock in a zone with summer time: 182 calendar days back in New York
	// would be an hour off TAPD's horizon.
	nyNow := time.Date(2026, 11, 25, 12, 0, 0, 0, ny)
	f := tapdtest.New(tapdtest.Options{Seed: 2, Now: nyNow, Months: 7, RecordsPerDay: 2})
	defer f.Close()
	want := nyNow.Add(-182 * 24 * time.Hour) // Shanghai has no summer time
	if want.Equal(nyNow.AddDate(0, 0, -182)) {
		t.Fatal("the two zones agree; the test proves nothing")
	}
	if h := f.Horizon(); !h.Equal(want) {
		t.Fatalf("horizon %v, want %v (182 days back in Asia/Shanghai)", h, want)
	}
	ws := f.Projects()[0].ID
	// want is 2026-05-28 01:00 in Shanghai.
	if status, _, p := call(t, f, window(ws, "2026-05-28 01:00", "2026-05-29 00:00")); status != 200 {
		t.Fatalf("start at the horizon minute: %d %s", status, p.Info)
	}
	if status, _, _ := call(t, f, window(ws, "2026-05-28 00:59", "2026-05-29 00:00")); status != 422 {
		t.Fatalf("start a minute before the horizon: %d, want 422", status)
	}
}

func TestTooOldStartRejectedOrClamped(t *testing.T) {
	// now 2026-11-25 12:00 → horizon 2026-05-27 12:00.
	tooOld := func(ws string) url.Values { return window(ws, "2026-05-01 00:00", "2026-05-31 23:59") }
	fromHorizon := func(ws string) url.Values { return window(ws, "2026-05-27 12:00", "2026-05-31 23:59") }

	t.Run("reject (default)", func(t *testing.T) {
		f := tapdtest.New(tapdtest.Options{Seed: 3, Now: now, RecordsPerDay: 10})
		defer f.Close()
		ws := f.Projects()[0].ID
		if status, _, p := call(t, f, tooOld(ws)); status != 422 || !strings.Contains(p.Info, "只能查最近半年内的数据") {
			t.Fatalf("got %d %q, want 422 about the half year", status, p.Info)
		}
		if status, _, _ := call(t, f, fromHorizon(ws)); status != 200 {
			t.Fatalf("start at the horizon: %d", status)
		}
	})
	t.Run("clamp", func(t *testing.T) {
		f := tapdtest.New(tapdtest.Options{Seed: 3, Now: now, RecordsPerDay: 10, HorizonClamp: true})
		defer f.Close()
		ws := f.Projects()[0].ID
		old := f.AddRecord(ws, at(t, "2026-05-27 11:59:30"), nil)
		edge := f.AddRecord(ws, at(t, "2026-05-27 12:00:00"), nil)
		status, _, got := call(t, f, tooOld(ws))
		_, _, want := call(t, f, fromHorizon(ws))
		if status != 200 || got.Data.TotalItems == 0 || got.Data.TotalItems != want.Data.TotalItems ||
			!slices.Equal(idList(got), idList(want)) {
			t.Fatalf("clamped answer %d total %d, want the horizon's total %d", status, got.Data.TotalItems, want.Data.TotalItems)
		}
		if ids := idSet(got); ids[old.ID] || !ids[edge.ID] {
			t.Fatalf("clamped answer has the record before the horizon: %v, at the horizon: %v", ids[old.ID], ids[edge.ID])
		}
		for _, r := range got.Data.Records {
			if r.Created < "2026-05-27 12:00:00" {
				t.Fatalf("record %s created %s, before the horizon", r.ID, r.Created)
			}
		}
		if status, _, p := call(t, f, window(ws, "2026-05-01 00:00", "2026-05-20 00:00")); status != 200 || p.Data.TotalItems != 0 || len(p.Data.Records) != 0 {
			t.Fatalf("window wholly before the horizon: %d %+v, want an empty page", status, p.Data)
		}
		if status, _, p := call(t, f, window(ws, "2026-04-30 00:00", "2026-05-31 23:59")); status != 422 || !strings.Contains(p.Info, "不能跨月") {
			t.Fatalf("two months with clamping: %d %q, want 422", status, p.Info)
		}
	})
}

func TestLateRecordsAppearInTheirWindow(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 4, Now: now, Months: 1, RecordsPerDay: 60})
	defer f.Close()
	ws := f.Projects()[0].ID
	win := window(ws, "2026-11-25 08:00", "2026-11-25 10:00")
	_, _, before := call(t, f, win)
	// Created 3 hours ago, visible only now.
	late := f.AddRecords(ws, now.Add(-3*time.Hour), 2)
	_, _, after := call(t, f, win)
	if after.Data.TotalItems != before.Data.TotalItems+2 || !idSet(after)[late[0].ID] || !idSet(after)[late[1].ID] {
		t.Fatalf("total %d → %d; late records %s, %s returned: %v %v", before.Data.TotalItems, after.Data.TotalItems,
			late[0].ID, late[1].ID, idSet(after)[late[0].ID], idSet(after)[late[1].ID])
	}

	// Many late records in random order, some at the second of an existing
	// one: every day's answer must still be exactly the truth, newest first.
	rng := rand.New(rand.NewPCG(1, 2))
	truth := f.Truth()
	for i := range 300 {
		t0 := now.Add(-time.Duration(rng.Int64N(int64(20 * 24 * time.Hour))))
		if i%3 == 0 {
			t0 = truth[rng.IntN(len(truth))].Created
		}
		f.AddRecord(ws, t0, nil)
	}
	truth = f.Truth()
	for day := 5; day <= 24; day++ {
		start := time.Date(2026, 11, day, 0, 0, 0, 0, tapdtest.Shanghai)
		var want []tapdtest.Record
		for _, r := range truth {
			if r.Workspace == ws && !r.CompanyLevel && !r.Created.Before(start) && r.Created.Before(start.Add(24*time.Hour)) {
				want = append(want, r)
			}
		}
		_, _, p := call(t, f, window(ws, start.Format("2006-01-02 15:04"), start.Add(24*time.Hour-time.Minute).Format("2006-01-02 15:04")))
		if got, exp := idList(p), newestFirst(want); !slices.Equal(got, exp) {
			t.Fatalf("day %d: got %d ids, want %d\n got %v\nwant %v", day, len(got), len(exp), got, exp)
		}
	}
}

func TestHostileTitles(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 5, Now: now, Months: 1, RecordsPerDay: 1})
	defer f.Close()
	ws := f.Projects()[0].ID
	when := at(t, "2026-11-25 11:00:00")
	nul := f.AddRecord(ws, when, func(r *tapdtest.Record) { r.Title, r.Creator = "a\x00b", "c\x00d" })
	lone := f.AddRecord(ws, when, func(r *tapdtest.Record) { r.TitleJSON = `x\ud800y` })
	bad := f.AddRecord(ws, when, func(r *tapdtest.Record) { r.TitleJSON = "caf\xe9 \\/ok" })
	if lone.Title != "x\ufffdy" || bad.Title != "caf\ufffd /ok" {
		t.Fatalf("truth titles %q %q, want what encoding/json decodes", lone.Title, bad.Title)
	}
	_, raw, p := call(t, f, window(ws, "2026-11-25 11:00", "2026-11-25 11:00"))
	for _, want := range []string{`"title":"a\u0000b"`, `"creator":"c\u0000d"`, `"title":"x\ud800y"`, "\"title\":\"caf\xe9 \\/ok\""} {
		if !strings.Contains(raw, want) {
			t.Errorf("body lacks %q:\n%.600q", want, raw)
		}
	}
	if strings.Contains(raw, "\x00") || utf8.ValidString(raw) {
		t.Errorf("body has a raw NUL (%v) or no raw invalid byte (valid UTF-8: %v)", strings.Contains(raw, "\x00"), utf8.ValidString(raw))
	}
	byID := map[string][2]string{}
	for _, r := range p.Data.Records {
		byID[r.ID] = [2]string{r.Title, r.Creator}
	}
	if byID[nul.ID] != [2]string{"a\x00b", "c\x00d"} || byID[lone.ID][0] != lone.Title || byID[bad.ID][0] != bad.Title {
		t.Fatalf("decoded %q", byID)
	}
}

func TestMaxPerPage(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 6, Now: now, Months: 1, RecordsPerDay: 100, MaxPerPage: 100, PagingCap: 1000})
	defer f.Close()
	ws := f.Projects()[0].ID
	win := func(extra ...string) url.Values { return window(ws, "2026-11-01 00:00", "2026-11-25 11:59", extra...) }
	_, raw, p1 := call(t, f, win())
	if p1.Data.PerPage != "100" || len(p1.Data.Records) != 100 || p1.Data.CurrentPage != "1" || !strings.Contains(raw, `"perPage":"100"`) {
		t.Fatalf("asked 200: perPage %q, %d records", p1.Data.PerPage, len(p1.Data.Records))
	}
	_, _, p2 := call(t, f, win("page", "2"))
	_, _, p2by100 := call(t, f, win("page", "2", "limit", "100"))
	if !slices.Equal(idList(p2), idList(p2by100)) || p2.Data.Records[0].ID == p1.Data.Records[99].ID {
		t.Fatal("page 2 is not records 100..199")
	}
	if _, _, p := call(t, f, win("limit", "50")); p.Data.PerPage != "50" || len(p.Data.Records) != 50 {
		t.Fatalf("asked 50 below the cap: perPage %q", p.Data.PerPage)
	}
	// The page×limit cap counts the records per page actually served.
	if status, _, _ := call(t, f, win("page", "10")); status != 200 {
		t.Fatalf("page 10 × 100 = cap: %d", status)
	}
	if status, _, _ := call(t, f, win("page", "11")); status != 422 {
		t.Fatalf("page 11 × 100 beyond the cap: %d, want 422", status)
	}
}

func TestFailPagesAbove(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 7, Now: now, Months: 1, RecordsPerDay: 10, FailPagesAbove: 100})
	defer f.Close()
	ws := f.Projects()[0].ID
	for range 3 {
		if status, _, p := call(t, f, window(ws, "2026-11-20 00:00", "2026-11-21 00:00", "limit", "101")); status != 500 || p.Status != 500 {
			t.Fatalf("limit 101: %d, want 500 every time", status)
		}
	}
	for _, limit := range []string{"100", ""} {
		if status, _, _ := call(t, f, window(ws, "2026-11-20 00:00", "2026-11-21 00:00", "limit", limit)); status != 200 {
			t.Fatalf("limit %q: %d", limit, status)
		}
	}
	faults := 0
	for _, r := range f.Requests() {
		if r.Fault == string(tapdtest.Fault500) {
			faults++
		}
	}
	if faults != 3 {
		t.Fatalf("%d requests logged as Fault500, want 3", faults)
	}
}

func TestFailWindowAndFailWhen(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 8, Now: now, Months: 1, RecordsPerDay: 10})
	defer f.Close()
	ws := f.Projects()[0].ID
	clear := f.FailWindow(at(t, "2026-11-10 00:00:00"), at(t, "2026-11-11 00:00:00"), tapdtest.Fault502HTML)
	for range 3 {
		if status, _, _ := call(t, f, window(ws, "2026-11-10 05:00", "2026-11-10 06:00")); status != 502 {
			t.Fatalf("start inside the failing window: %d, want 502 every time", status)
		}
	}
	// No start_time: TAPD starts at end_time − 7 days, inside the window.
	if status, _, _ := call(t, f, window(ws, "", "2026-11-17 03:00")); status != 502 {
		t.Fatalf("defaulted start inside the window: %d, want 502", status)
	}
	for _, start := range []string{"2026-11-09 23:59", "2026-11-11 00:00"} {
		if status, _, _ := call(t, f, window(ws, start, "2026-11-11 06:00")); status != 200 {
			t.Fatalf("start %s outside the window: %d", start, status)
		}
	}
	clear()
	if status, _, _ := call(t, f, window(ws, "2026-11-10 05:00", "2026-11-10 06:00")); status != 200 {
		t.Fatalf("after clearing: %d", status)
	}

	f.FailWhen(func(q url.Values) bool { return q.Get("company_only") == "1" }, tapdtest.Fault503)
	f.FailWhen(func(q url.Values) bool { q.Set("workspace_id", "1010480"); return false }, tapdtest.Fault500)
	if status, _, _ := call(t, f, window(f.CompanyID(), "2026-11-10 05:00", "2026-11-10 06:00", "company_only", "1")); status != 503 {
		t.Fatalf("company_only: %d, want 503", status)
	}
	// The second rule's change to its copy of the query must not leak.
	if status, _, p := call(t, f, window(ws, "2026-11-10 05:00", "2026-11-10 06:00")); status != 200 {
		t.Fatalf("project: %d %q", status, p.Info)
	}
}

func TestHundredProjects(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 9, Now: now, Projects: 100, Months: 7, RecordsPerDay: 2})
	defer f.Close()
	ps := f.Projects()
	ids, names := map[string]bool{}, map[string]bool{}
	for _, p := range ps {
		ids[p.ID], names[p.Name] = true, true
	}
	if len(ps) != 100 || len(ids) != 100 || len(names) != 100 || ids[f.CompanyID()] {
		t.Fatalf("%d projects, %d distinct ids, %d distinct names", len(ps), len(ids), len(names))
	}

	req, _ := http.NewRequest("GET", f.URL+"/workspaces/projects?company_id="+f.CompanyID(), nil)
	req.SetBasicAuth(f.Credentials())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []struct {
			Workspace struct{ ID, Category string }
		} `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	listed := map[string]bool{}
	for _, e := range list.Data {
		if e.Workspace.Category == "project" {
			listed[e.Workspace.ID] = true
		}
	}
	if len(list.Data) != 101 || len(listed) != 100 {
		t.Fatalf("projects endpoint lists %d entries, %d projects", len(list.Data), len(listed))
	}

	const start, end = "2026-11-01 00:00", "2026-11-25 11:59"
	sum := 0
	for _, p := range ps {
		if !listed[p.ID] {
			t.Fatalf("project %s not listed", p.ID)
		}
		_, _, pp := call(t, f, window(p.ID, start, end, "limit", "1"))
		sum += pp.Data.TotalItems
	}
	_, _, all := call(t, f, window(f.CompanyID(), start, end))
	var want []tapdtest.Record
	from, to := at(t, start+":00"), at(t, end+":59")
	for _, r := range f.Truth() {
		if !r.CompanyLevel && !r.Created.Before(from) && !r.Created.After(to) {
			want = append(want, r)
		}
	}
	if all.Data.TotalItems != sum || sum != len(want) || sum < 4000 {
		t.Fatalf("company-wide total %d, sum over projects %d, truth %d", all.Data.TotalItems, sum, len(want))
	}
	if got, exp := idList(all), newestFirst(want)[:200]; !slices.Equal(got, exp) {
		t.Fatalf("company-wide first page differs from the truth, newest first")
	}
}

func BenchmarkCompanyWidePage(b *testing.B) {
	f := tapdtest.New(tapdtest.Options{Seed: 9, Now: now, Projects: 100, Months: 7, RecordsPerDay: 20})
	defer f.Close()
	u := f.URL + "/workspaces/member_activity_log?" + window(f.CompanyID(), "2026-11-01 00:00", "2026-11-25 11:59", "page", "30").Encode()
	user, pw := f.Credentials()
	for b.Loop() {
		req, _ := http.NewRequest("GET", u, nil)
		req.SetBasicAuth(user, pw)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func TestCompanyWideQueryAndCompanyLevelLogs(t *testing.T) {
	for _, incl := range []bool{false, true} {
		t.Run("includes="+strconv.FormatBool(incl), func(t *testing.T) {
			f := tapdtest.New(tapdtest.Options{Seed: 10, Now: now, Months: 1, RecordsPerDay: 5, CompanyRecordsPerDay: 3,
				CompanyWideIncludesCompanyLevel: incl})
			defer f.Close()
			const start, end = "2026-11-01 00:00", "2026-11-25 11:59"
			_, _, all := call(t, f, window(f.CompanyID(), start, end, "limit", "1"))
			_, _, own := call(t, f, window(f.CompanyID(), start, end, "company_only", "1", "limit", "1"))
			sum := 0
			for _, p := range f.Projects() {
				_, _, pp := call(t, f, window(p.ID, start, end, "limit", "1"))
				sum += pp.Data.TotalItems
			}
			want := sum
			if incl {
				want += own.Data.TotalItems
			}
			if own.Data.TotalItems == 0 || all.Data.TotalItems != want {
				t.Fatalf("company-wide %d, projects %d, company-level %d; want %d", all.Data.TotalItems, sum, own.Data.TotalItems, want)
			}
			// Queryable answers the company-wide scope the same way.
			wantQ := 0
			for _, p := range f.Projects() {
				wantQ += len(f.Queryable(p.ID, false))
			}
			if incl {
				wantQ += len(f.Queryable(f.CompanyID(), true))
			}
			if q := len(f.Queryable(f.CompanyID(), false)); q != wantQ {
				t.Fatalf("Queryable company-wide %d, want %d", q, wantQ)
			}
		})
	}
}

func TestHorizonDaysAndPagingCapAreHonoured(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 11, Now: now, Months: 2, RecordsPerDay: 10, HorizonDays: 30, PagingCap: 1000})
	defer f.Close()
	ws := f.Projects()[0].ID
	if h := f.Horizon(); !h.Equal(now.AddDate(0, 0, -30)) {
		t.Fatalf("horizon %v, want 30 days back", h)
	}
	// now − 30 days = 2026-10-26 12:00.
	if status, _, _ := call(t, f, window(ws, "2026-10-26 11:59", "2026-10-31 00:00")); status != 422 {
		t.Fatalf("start before the 30-day horizon: %d, want 422", status)
	}
	if status, _, _ := call(t, f, window(ws, "2026-10-26 12:00", "2026-10-31 00:00")); status != 200 {
		t.Fatalf("start at the 30-day horizon: %d", status)
	}
	q := f.Queryable(ws, false)
	if oldest := q[len(q)-1].Created; oldest.Before(at(t, "2026-10-26 12:00:00")) {
		t.Fatalf("Queryable reaches %v, beyond the horizon", oldest)
	}
	if status, _, _ := call(t, f, window(ws, "2026-11-01 00:00", "2026-11-25 11:59", "page", "5")); status != 200 {
		t.Fatalf("page 5 × 200 = cap: %d", status)
	}
	if status, _, p := call(t, f, window(ws, "2026-11-01 00:00", "2026-11-25 11:59", "page", "6")); status != 422 || !strings.Contains(p.Info, "1000") {
		t.Fatalf("page 6 × 200 beyond the cap of 1000: %d %q", status, p.Info)
	}
}
