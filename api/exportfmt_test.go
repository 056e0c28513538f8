package api

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

var hostileFields = []string{"", "plain", "迭代: 标题", "a,b", `say "hi"`, "line\nbreak", "cr\rhere", " lead", "\tlead", "\u3000ideographic",
	`\.`, "=SUM(A1)", "+1", "-2", "@cmd", "\tx", "\r", "=a,b", `-"q"`, "bad\xffutf8", "nul\x00x", "\b\f\x1f\x7f", "\u2028\u2029", "🚀 emoji", `back\slash`}

// The hand-written export lines must be byte for byte what encoding/csv and
// encoding/json write for the same record.
func TestExportLinesMatchTheStandardEncoders(t *testing.T) {
	for _, f := range hostileFields {
		r := storage.ExportRow{ID: 42, Platform: []byte(f), Serial: []byte("S"), ActionType: []byte(f), ActionDetail: []byte(f),
			Username: []byte(f), Unix: 1767225600, Source: []byte("tapd"), SourceID: []byte(f), WorkspaceID: []byte("1"),
			Extra: []byte(`{"ip": "1.1.1.1", "title": "a: b, c"}`), IngestedUnix: 1767225601}

		var want bytes.Buffer
		cw := csv.NewWriter(&want)
		cw.Write([]string{"42", inertCell(f), "S", inertCell(f), inertCell(f), inertCell(f), "1767225600",
			time.Unix(1767225600, 0).UTC().Format(time.RFC3339), "tapd", inertCell(f), "1", `{"ip":"1.1.1.1","title":"a: b, c"}`})
		cw.Flush()
		if got := appendCSVRow(nil, &r); string(got) != want.String() {
			t.Errorf("CSV for %q:\n got %q\nwant %q", f, got, want.String())
		}

		a := storage.Activity{ID: 42, Platform: f, Serial: "S", ActionType: f, ActionDetail: f, Username: f,
			Timestamp: time.Unix(1767225600, 0), Source: "tapd", SourceID: f, WorkspaceID: "1",
			Extra: map[string]string{"ip": "1.1.1.1", "title": "a: b, c"}, IngestedAt: time.Unix(1767225601, 0)}
		var wantJSON bytes.Buffer
		enc := json.NewEncoder(&wantJSON)
		enc.SetEscapeHTML(false)
		enc.Encode(toDetailJSON(a))
		if got := appendNDJSONRow(nil, &r); string(got) != wantJSON.String() {
			t.Errorf("NDJSON for %q:\n got %s\nwant %s", f, got, wantJSON.String())
		}
	}
}
