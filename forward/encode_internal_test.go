package forward

import (
	"bytes"
	"encoding/json"
	"testing"
)

// reflected is what encoding/json makes of e (HTML left unescaped), the
// text appendEvent must match byte for byte.
func reflected(t testing.TB, e Event) []byte {
	t.Helper()
	var v any = e
	if e.Alert != nil {
		v = struct {
			Type  string `json:"type"`
			Time  int64  `json:"time"`
			Alert *Alert `json:"alert"`
		}{e.Type, e.Time, e.Alert}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func sampleRecord(text string) *Record {
	return &Record{ID: 42, Platform: "tapd", Serial: "10074561", ActionType: "download", ActionDetail: "下载附件: " + text,
		Username: "张三", Timestamp: 1760000000, Source: "tapd", SourceID: "1010074561001", WorkspaceID: "10074561",
		IP: "10.0.0.1", UA: "Mozilla/5.0 <x>", URL: "https://www.tapd.cn/a?b=1&c=2", Object: "附件", ObjectKey: "attachment",
		Title: text, IngestedAt: 1760000100, Extra: map[string]string{"title": text, "ip": "10.0.0.1", "z": "", "Ä": "1", "a b": "\x01"}}
}

func TestAppendEventIsEncodingJSONs(t *testing.T) {
	odd := "quote \" backslash \\ newline \n tab \t ctl \x1f html <&> sep \u2028\u2029 bad \xff\xfe 中文 emoji 🎉"
	events := map[string]Event{
		"empty":    {},
		"record":   {Index: 7, Type: "record", Time: 1760000100, Record: sampleRecord("plain")},
		"odd text": {Index: 8, Type: "update", Time: 1, Record: sampleRecord(odd), Prev: 3},
		"nil extra": {Index: 9, Type: "record", Record: func() *Record {
			r := sampleRecord("x")
			r.Extra = nil
			return r
		}()},
		"delete":                {Index: 10, Type: "delete", Time: 5, RecordID: 42, Prev: 7, Token: "ci-" + odd},
		"purge":                 {Index: 11, Type: "purge", Time: 5, RecordID: 42, Prev: 7, Policy: "tapd after 3y"},
		"hold":                  {Index: 12, Type: "hold", Time: 5, Token: "admin", Hold: &Hold{ID: 3, Name: "case " + odd, Reason: "r", Filter: "user=a&b"}},
		"access":                {Index: 13, Type: "access", Time: 5, Access: &Access{ID: 9, Principal: "token:ci", SourceIP: "::1", Action: "export", Params: map[string]string{"q": odd, "a": "1"}, Rows: 12, Outcome: "ok"}},
		"access without params": {Index: 14, Type: "access", Access: &Access{ID: 1}},
		"withheld":              {Index: 15, Type: "record", RecordID: 42, Withheld: true},
		"checkpoint": {Index: 16, Type: "record", Time: 2, Record: sampleRecord("c"),
			Checkpoint: &Checkpoint{Size: 17, Root: "q2Xk+/=="}},
		"alert": {Type: "alert", Time: 9, Alert: &Alert{ID: 5, Rule: "bulk-download", Key: "张三", Condition: "threshold", Count: 100,
			WindowStart: 1, WindowEnd: 2, FirstRecordID: 3, LastRecordID: 4, LogIndex: 6, FiredAt: 9, URL: "https://c/search?user=%E5%BC%A0&x=1"}},
		"alert without url": {Type: "alert", Alert: &Alert{ID: 1, Key: odd}},
	}
	for name, e := range events {
		got, want := appendEvent(nil, e), reflected(t, e)
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
		if !json.Valid(got) {
			t.Errorf("%s: not JSON: %s", name, got)
		}
	}
}

func BenchmarkEncodeEvent(b *testing.B) {
	e := Event{Index: 7, Type: "record", Time: 1760000100, Record: sampleRecord("迭代: 发布计划"), Checkpoint: &Checkpoint{Size: 9, Root: "abc"}}
	b.Run("appendEvent", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = appendEvent(buf[:0], e)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// An event's shared encoding is not reused once a purge withheld its
// content: a replay sends it withheld.
func TestSharedLinesSeeAPurge(t *testing.T) {
	var lines sharedLines
	full := Event{Index: 7, Type: "record", Time: 1, Record: sampleRecord("secret")}
	if _, err := lines.encode("json", full); err != nil {
		t.Fatal(err)
	}
	line, err := lines.encode("json", Event{Index: 7, Type: "record", RecordID: 42, Withheld: true})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(line, []byte("secret")) {
		t.Fatalf("the withheld event is sent as it was before the purge: %s", line)
	}
}
