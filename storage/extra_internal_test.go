package storage

import (
	"encoding/json"
	"testing"
)

func TestCompactStoredJSONKeepsStringsIntact(t *testing.T) {
	for in, want := range map[string]string{
		`{"title": "迭代: a, b", "ip": "1.1.1.1"}`:    `{"title":"迭代: a, b","ip":"1.1.1.1"}`,
		`{"q": "say \"hi, there\": ok", "x": "\\"}`: `{"q":"say \"hi, there\": ok","x":"\\"}`,
		`{"a":"b"}`: `{"a":"b"}`,
		`{"t": "tab\tand: more", "n": "back\\\\", "z": ""}`: `{"t":"tab\tand: more","n":"back\\\\","z":""}`,
	} {
		got := compactStoredJSON(in)
		if got != want {
			t.Errorf("compact(%s) = %s, want %s", in, got, want)
		}
		var a, b map[string]string
		if err := json.Unmarshal([]byte(in), &a); err != nil {
			t.Fatalf("bad test input %s: %v", in, err)
		}
		if err := json.Unmarshal([]byte(got), &b); err != nil || len(a) != len(b) {
			t.Fatalf("compact(%s) = %s is not the same object: %v", in, got, err)
		}
		for k := range a {
			if a[k] != b[k] {
				t.Fatalf("compact(%s) changed %q", in, k)
			}
		}
	}
}
