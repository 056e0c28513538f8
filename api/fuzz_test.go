package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// checkError asserts err is a client error a person can read, echoing little.
func checkError(t *testing.T, err error, statuses ...int) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error is not an *Error (it would be a 500): %v", err)
	}
	ok := false
	for _, s := range statuses {
		ok = ok || e.Status == s
	}
	if !ok || e.Message == "" || !utf8.ValidString(e.Message) || len(e.Message) > 2000 {
		t.Fatalf("bad error: status %d, %d-byte message %q", e.Status, len(e.Message), e.Message)
	}
}

func FuzzDecodeActivityBody(f *testing.F) {
	for _, seed := range []string{
		`{"platform":"tiktok","serial":"device_serial_123","action_type":"post","action_detail":"Published video successfully","username":"user123","timestamp":1707725000}`,
		`{"platform":"a","action_type":"b"}`, `{"platform":`, `[1,2]`, ``, `null`, `{"platform":"a","action_type":"b"} {}`,
		`{"platform":"a","action_type":"b","timestamp":"1707725000"}`, `{"platform":"a","action_type":"b","timestamp":1.5}`,
		`{"platform":7,"action_type":"b"}`, `{"serial":"x"}`, `{"platform":"a","action_type":"b","timestamp":-5}`,
		`{"platform":"a","action_type":"b","timestamp":253402300799}`, `{"platform":"a","action_type":"b","timestamp":253402300800}`,
		`{"platform":"a","action_type":"b","actiontype":"c"}`, `{"platform":"a\u0000","action_type":"b"}`,
		`{"platform":"a","action_type":"b","action_detail":"x\n\ty"}`, `{"platform":"a","action_type":"b","action_detail":"x\ry"}`,
		"{\"platform\":\"\xff\",\"action_type\":\"b\"}", `{"platform":"\ud800","action_type":"b"}`,
		`{"platform":"\ud83d\ude80","action_type":"b"}`, `{"platform":"\\ud800","action_type":"b"}`, `{"platform":"\u0085","action_type":"b"}`,
	} {
		f.Add([]byte(seed))
	}
	now := time.Unix(1707725000, 0)
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "http://localhost/api/v1/activity_log", strings.NewReader(string(body)))
		var req createRequest
		err := decodeBody(httptest.NewRecorder(), r, &req)
		if err != nil {
			checkError(t, err, http.StatusBadRequest, http.StatusRequestEntityTooLarge)
			return
		}
		a, err := req.activity(now)
		if err != nil {
			checkError(t, err, http.StatusBadRequest)
			return
		}
		if a.Platform == "" || a.ActionType == "" || !validUnix(a.Timestamp.Unix()) {
			t.Fatalf("accepted an incomplete record: %+v", a)
		}
		for name, v := range map[string]string{"platform": a.Platform, "serial": a.Serial, "action_type": a.ActionType,
			"action_detail": a.ActionDetail, "username": a.Username} {
			if problem := badText(v, name == "action_detail"); problem != "" {
				t.Fatalf("accepted %s that %s: %q", name, problem, v)
			}
			if strings.ContainsRune(v, utf8.RuneError) && !strings.Contains(string(body), "\uFFFD") && !strings.Contains(strings.ToLower(string(body)), `\ufffd`) {
				t.Fatalf("accepted %s with a replacement character the client never sent: %q", name, v)
			}
		}
	})
}

func FuzzParseQuery(f *testing.F) {
	for _, seed := range []string{
		"platform=tiktok&limit=50&offset=0", "limit=0", "limit=1001", "limit=ten", "offset=-1", "offset=100001", "platfrom=x",
		"source=jira", "since=10&until=5", "platform=a&platform=b", "since=0", "since=253402300800", "until=253402300799",
		"cursor=&detail=1", "cursor=zzz", "cursor=&offset=5", "detail=yes", "platform=%00", "serial=%ff", "username=%0a",
		"action_type=%C2%85", "%zz", "a;b", "since=-9223372036854775808", "limit=+5", "limit= 5",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "http://localhost/api/v1/activity_log", nil)
		r.URL.RawQuery = raw
		q, filter, err := filterQuery(r, "limit", "offset", "cursor", "detail")
		if err == nil {
			_, err = q.int("limit", 100, 1, 1000)
		}
		if err == nil {
			_, err = q.flag("detail")
		}
		if err == nil {
			filter.After, err = decodeCursor(q.str("cursor"))
		}
		if err != nil {
			checkError(t, err, http.StatusBadRequest)
			return
		}
		for _, v := range []string{filter.Platform, filter.Serial, filter.ActionType, filter.Username, filter.Source} {
			if problem := badText(v, false); problem != "" {
				t.Fatalf("accepted a filter that %s: %q", problem, v)
			}
		}
		for _, tm := range []time.Time{filter.Since, filter.Until} {
			if !tm.IsZero() && !validUnix(tm.Unix()) {
				t.Fatalf("accepted time %v outside the bounds", tm)
			}
		}
		if filter.After != nil && (!validUnix(filter.After.Timestamp.Unix()) || filter.After.ID <= 0) {
			t.Fatalf("accepted cursor position %+v", filter.After)
		}
	})
}

func FuzzDecodeCursor(f *testing.F) {
	for _, seed := range []string{
		"", "zzz", CursorAt(time.Unix(1707725000, 0), 123), CursorAt(time.Unix(253402300799, 0), 1<<62),
		CursorAt(time.Unix(253402300800, 0), 1), CursorAt(time.Unix(0, 0), 1), CursorAt(time.Unix(5, 0), 0),
		"djE6MTcwNzcyNTAwMDoxMjM", "djE6MTcwNzcyNTAwMDoxMjN4", "djE6KzU6MQ", "djI6MTox", "djE6MTox=",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		pos, err := decodeCursor(raw)
		if err != nil {
			checkError(t, err, http.StatusBadRequest)
			return
		}
		if raw == "" {
			if pos != nil {
				t.Fatal("the empty cursor names a position")
			}
			return
		}
		if pos.ID <= 0 || !validUnix(pos.Timestamp.Unix()) {
			t.Fatalf("accepted position %+v", pos)
		}
		if again := CursorAt(pos.Timestamp, pos.ID); again != raw {
			t.Fatalf("cursor %q decodes to %+v, which encodes as %q", raw, pos, again)
		}
	})
}
