package console

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

func TestMessagesAndLabelsAreComplete(t *testing.T) {
	for _, lang := range languages {
		if got, want := slices.Sorted(maps.Keys(messages[lang])), slices.Sorted(maps.Keys(messages["en"])); !slices.Equal(got, want) {
			t.Errorf("%s messages have keys %v, English %v", lang, got, want)
		}
		if got := slices.Sorted(maps.Keys(ActionLabels[lang])); !slices.Equal(got, slices.Sorted(slices.Values(ActionKeys))) {
			t.Errorf("%s action labels for %v", lang, got)
		}
		if got := slices.Sorted(maps.Keys(ObjectLabels[lang])); !slices.Equal(got, slices.Sorted(slices.Values(ObjectKeys))) {
			t.Errorf("%s object labels for %v", lang, got)
		}
	}
	// The Chinese labels are TAPD's own, as the fake sends them.
	if !maps.Equal(ActionLabels["zh"], tapdtest.OperateTypes) {
		t.Errorf("Chinese action labels %v, TAPD's %v", ActionLabels["zh"], tapdtest.OperateTypes)
	}
	if !maps.Equal(ObjectLabels["zh"], tapdtest.OperateObjects) {
		t.Errorf("Chinese object labels %v, TAPD's %v", ObjectLabels["zh"], tapdtest.OperateObjects)
	}
}

func TestAcceptLanguage(t *testing.T) {
	for header, want := range map[string]string{
		"zh-Hans-CN":              "zh",
		"ZH-tw;q=0.8, en;q=0.9":   "en",
		"en;q=0, zh;q=0.1":        "zh", // q=0 means "not this"
		"de, fr;q=0.9":            "en",
		"zh;q=bogus":              "zh",
		",,;;":                    "en",
		"en-US,en;q=0.9,zh;q=0.8": "en",
	} {
		if got := fromAcceptLanguage(header); got != want {
			t.Errorf("Accept-Language %q = %s, want %s", header, got, want)
		}
	}
}

func TestParseLocalReadsTheConfiguredZone(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	cases := []struct {
		in   string
		end  bool
		want time.Time
	}{
		{"2026-03-08", false, time.Date(2026, 3, 8, 0, 0, 0, 0, ny)},
		{"2026-03-08", true, time.Date(2026, 3, 9, 0, 0, 0, 0, ny)}, // a bare end date is the whole day (23 hours here)
		{"2026-03-08 12:30", true, time.Date(2026, 3, 8, 12, 30, 0, 0, ny)},
		{"2026-03-08T12:30:15", false, time.Date(2026, 3, 8, 12, 30, 15, 0, ny)},
	}
	for _, c := range cases {
		got, err := parseLocal(c.in, ny, c.end)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("parseLocal(%q, end=%v) = %v, %v; want %v", c.in, c.end, got, err, c.want)
		}
	}
	for _, bad := range []string{"yesterday", "2026-13-01", "0001-01-01", "2026-03-08 25:00", "1700000000"} {
		if _, err := parseLocal(bad, ny, false); err == nil {
			t.Errorf("parseLocal(%q) accepted", bad)
		}
	}
}

func TestCursorRoundTripAndGarbage(t *testing.T) {
	a := storage.Activity{ID: 42, Timestamp: time.Unix(1767225600, 0)}
	p, err := decodeCursor(encodeCursor(a))
	if err != nil || p.ID != 42 || p.Timestamp.Unix() != 1767225600 {
		t.Fatalf("round trip = %+v, %v", p, err)
	}
	for _, bad := range []string{"", "!!", "djI6MTAwOjE", "djE6LTU6MQ", "djE6MTAwOjA"} {
		if _, err := decodeCursor(bad); err == nil {
			t.Errorf("cursor %q accepted", bad)
		}
	}
}

func TestGranularityAndBuckets(t *testing.T) {
	loc, _ := time.LoadLocation("Asia/Shanghai")
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, loc) }
	for _, c := range []struct {
		from, to time.Time
		asked    string
		want     string
	}{
		{day(2026, 1, 1), day(2026, 3, 1), "", byDay},
		{day(2026, 1, 1), day(2026, 6, 1), "", byWeek},
		{day(2023, 1, 1), day(2026, 6, 1), "", byMonth},
		{day(2026, 1, 1), day(2026, 6, 1), byDay, byDay},     // 151 bars: allowed when asked
		{day(2020, 1, 1), day(2026, 6, 1), byDay, byWeek},    // too many days: the next coarser
		{day(2000, 1, 1), day(2026, 6, 1), byDay, byMonth},   // and the next
		{day(2026, 1, 1), day(2026, 1, 5), "hourly", byDay},  // unknown: the default
		{day(2026, 1, 1), day(2026, 1, 5), byMonth, byMonth}, // coarser is always fine
		{day(2026, 1, 1), day(2026, 1, 1).Add(time.Second), "", byDay},
	} {
		if got := granularity(c.asked, c.from, c.to, loc); got != c.want {
			t.Errorf("granularity(%q, %v…%v) = %s, want %s", c.asked, c.from, c.to, got, c.want)
		}
	}
	days := []storage.DayCount{{Day: day(2026, 3, 1), Count: 2}, {Day: day(2026, 3, 2), Count: 3}, {Day: day(2026, 3, 9), Count: 4},
		{Day: day(2026, 3, 31), Count: 1}}
	weeks := buckets(days, day(2026, 3, 1).Add(10*time.Hour), day(2026, 3, 10), byWeek, loc)
	// 2026-03-01 is a Sunday: its week starts Monday 02-23.
	if len(weeks) != 3 || !weeks[0].Start.Equal(day(2026, 2, 23)) || weeks[0].Count != 2 || weeks[1].Count != 3 || weeks[2].Count != 4 {
		t.Fatalf("weeks = %+v", weeks)
	}
	months := buckets(days, day(2026, 3, 1), day(2026, 4, 1), byMonth, loc)
	if len(months) != 1 || months[0].Count != 10 || !months[0].End.Equal(day(2026, 4, 1)) {
		t.Fatalf("months = %+v", months)
	}
	all := buckets(days, day(2026, 3, 1), day(2026, 3, 5), byDay, loc)
	if len(all) != 4 || all[2].Count != 0 || all[3].Count != 0 {
		t.Fatalf("empty days must be bars too: %+v", all)
	}
}

func TestNarrowedKeepsTypedBoundsInsideTheBucket(t *testing.T) {
	loc, _ := time.LoadLocation("Asia/Shanghai")
	c := &Console{o: Options{Location: loc}}
	s := search{From: "2026-03-04 10:00", To: "2026-03-20", User: "alice"}
	s.filter.Since, _ = parseLocal(s.From, loc, false)
	s.filter.Until, _ = parseLocal(s.To, loc, true)
	week := bucket{Start: time.Date(2026, 3, 2, 0, 0, 0, 0, loc), End: time.Date(2026, 3, 9, 0, 0, 0, 0, loc)}
	if got := c.narrowed(s, week); got != "/?from=2026-03-04+10%3A00&to=2026-03-08&user=alice" {
		t.Errorf("first week = %s", got)
	}
	last := bucket{Start: time.Date(2026, 3, 16, 0, 0, 0, 0, loc), End: time.Date(2026, 3, 23, 0, 0, 0, 0, loc)}
	if got := c.narrowed(s, last); got != "/?from=2026-03-16&to=2026-03-20&user=alice" {
		t.Errorf("last week = %s", got)
	}
}

func TestSecureOnlyOverTLSOrALocalProxy(t *testing.T) {
	for _, c := range []struct {
		remote, proto string
		want          bool
	}{
		{"127.0.0.1:5000", "https", true},
		{"[::1]:5000", "https", true},
		{"10.0.0.8:5000", "https", false}, // anyone could send the header
		{"127.0.0.1:5000", "", false},
		{"127.0.0.1:5000", "http", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.proto != "" {
			r.Header.Set("X-Forwarded-Proto", c.proto)
		}
		if got := secure(r); got != c.want {
			t.Errorf("secure(from %s, proto %q) = %v", c.remote, c.proto, got)
		}
	}
}

func TestSessionsExpireAndStayBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSessions(time.Hour, func() time.Time { return now })
	a := s.create("ops", config.ScopeAdmin)
	now = now.Add(59 * time.Minute)
	if _, ok := s.get(a.id); !ok {
		t.Fatal("session gone before its idle time")
	}
	now = now.Add(59 * time.Minute) // used a minute ago: idle time restarts on use
	if _, ok := s.get(a.id); !ok {
		t.Fatal("a used session expired")
	}
	now = now.Add(61 * time.Minute)
	if _, ok := s.get(a.id); ok {
		t.Fatal("idle session still valid")
	}
	b := s.create("ops", config.ScopeAdmin)
	for i := 0; i < 30; i++ { // used every 50 minutes, it still ends at the maximum age
		now = now.Add(50 * time.Minute)
		s.get(b.id)
	}
	if _, ok := s.get(b.id); ok {
		t.Fatal("session outlived its maximum age")
	}
	for range maxSessions + 10 {
		s.create("reader", config.ScopeRead)
	}
	if n := len(s.byID); n > maxSessions {
		t.Fatalf("%d sessions kept, bound %d", n, maxSessions)
	}
}

func TestCSRFTokensAreBoundToTheBrowser(t *testing.T) {
	c := newCSRF()
	tok := c.token("s:abc")
	if !c.valid("s:abc", tok) || c.valid("s:abd", tok) || c.valid("", c.token("")) || c.valid("s:abc", "") {
		t.Fatal("CSRF token checks are wrong")
	}
	if newCSRF().valid("s:abc", tok) {
		t.Fatal("a token survives a new key (restart)")
	}
}

// openAuth is a loopback install with no token.
type openAuth struct{}

func (openAuth) Open() bool            { return true }
func (openAuth) AdminConfigured() bool { return false }
func (openAuth) SignIn(*http.Request, string) (string, config.Scope, error) {
	return "", "", &AuthError{Status: 401, Message: "no"}
}

func TestTheTotalStopsAtTheCapUnlessAskedExactly(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, st *storage.Store) {
		var in []storage.Activity
		for i := range 12 {
			in = append(in, storage.Activity{Platform: "tapd", ActionType: "add", ActionDetail: "x", Timestamp: time.Unix(1767225600+int64(i), 0),
				Source: storage.SourceTAPD, SourceID: strconv.Itoa(i)})
		}
		if _, err := st.UpsertMirrored(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		c := New(Options{Store: st, Auth: openAuth{}, CountCap: 10, SameOrigin: func(*http.Request) error { return nil },
			Logger: slog.New(slog.DiscardHandler)})
		get := func(path string) string {
			rec := httptest.NewRecorder()
			c.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			return rec.Body.String()
		}
		if body := get("/?q=x"); !strings.Contains(body, "More than 10 records match") || !strings.Contains(body, `href="/?count=exact&amp;q=x"`) {
			t.Errorf("capped total: %s", between(body, `id="count"`, "</span>"))
		}
		if body := get("/?q=x&count=exact"); !strings.Contains(body, "12 records match") {
			t.Errorf("exact total: %s", between(body, `id="count"`, "</span>"))
		}
		if body := get("/?q=x&to=2025-12-31"); !strings.Contains(body, ">0 records match") {
			t.Errorf("under the cap: %s", between(body, `id="count"`, "</span>"))
		}
		// A count that outlasts its budget is given up; the page still shows its rows.
		slow := New(Options{Store: st, Auth: openAuth{}, CountBudget: time.Nanosecond, SameOrigin: func(*http.Request) error { return nil },
			Logger: slog.New(slog.DiscardHandler)})
		rec := httptest.NewRecorder()
		slow.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/?q=x", nil))
		if body := rec.Body.String(); rec.Code != 200 || !strings.Contains(body, "Not counted: counting this search takes longer than 1ns") ||
			strings.Count(body, "<tr data-id=") != 12 || !strings.Contains(body, "count=exact") {
			t.Errorf("count over budget = %d: %s", rec.Code, between(body, `id="count"`, "</span>"))
		}
	})
}

func between(s, start, end string) string {
	_, after, _ := strings.Cut(s, start)
	v, _, _ := strings.Cut(after, end)
	return v
}
