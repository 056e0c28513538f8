package jsontext

import (
	"bytes"
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

// marshal is encoding/json's text for v without HTML escaping: what
// AppendString and AppendStringMap must produce byte for byte.
func marshal(t testing.TB, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestAppendStringMapMatchesEncodingJSON(t *testing.T) {
	for _, m := range []map[string]string{
		nil,
		{},
		{"ip": "1.1.1.1", "title": "迭代: 发布 <v2> & more", "created": "2026-01-01 10:00:00"},
		{"q": `say "hi"\now`, "ctl": "a\x00b\x1fc\td\re\nf\bg\fh", "sep": "x\u2028y\u2029z"},
		{"bad": "ok\xff\xfe then é", "b\xc3": "split rune"},
		{"b": "2", "a": "1", "ab": "3", "": "empty key"},
	} {
		got := AppendStringMap(nil, m)
		want := marshal(t, m)
		if m == nil {
			want = []byte("{}")
		}
		if !bytes.Equal(got, want) {
			t.Errorf("AppendStringMap(%q)\n got %s\nwant %s", m, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "引号\"", "\x00\x7f\xff", "\u2028", "\xe2\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := AppendString(nil, []byte(s)), marshal(t, s); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q) = %s, encoding/json says %s", s, got, want)
		}
	})
}

func TestParseStringMapIsUnmarshal(t *testing.T) {
	for _, in := range []string{
		`{}`, ` { } `, `{"a":"b"}`, `{"ip": "1.1.1.1", "ua": "Mozilla/5.0 (X11)"}`, "{\n\t\"k\" : \"v\" ,\r\n \"x\":\"\"}",
		`{"项目":"演示 🚀","a":"b","a":"c"}`, `{"a":"b\"c"}`, `{"a":"\u00e9"}`, `{"a":1}`, `{"a":null}`, `{"a":"b",}`,
		`{"a":"b"} x`, `{"a" "b"}`, `[]`, ``, `{"a":"b"`, "{\"a\":\"\xff\"}", "{\"a\":\"\x01\"}", `{"a":{"b":"c"}}`,
	} {
		got, ok := ParseStringMap(in)
		var want map[string]string
		err := json.Unmarshal([]byte(in), &want)
		if ok && (err != nil || !maps.Equal(got, want)) {
			t.Errorf("%q: parsed %v, json.Unmarshal gives %v (%v)", in, got, want, err)
		}
		if !ok && err == nil && !strings.ContainsAny(in, "\\\xff") {
			t.Logf("%q: left to encoding/json", in)
		}
	}
	if _, ok := ParseStringMap(`{"ip": "1.1.1.1", "ua": "Mozilla/5.0"}`); !ok {
		t.Fatal("the common case fell back to encoding/json")
	}
}
