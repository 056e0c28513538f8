package api

import (
	"bytes"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tapd-mirror/tapd-mirror/internal/jsontext"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// Export lines are appended byte by byte from the driver's buffers: the
// export's hot loop, where encoding/csv and encoding/json cost a string per
// column and a map per extra. The output is byte for byte what encoding/csv
// (RFC 4180, "\n" line ends) and encoding/json (SetEscapeHTML(false)) write;
// exportfmt_test.go holds them to it.

// appendCSVRow appends one record as a CSV line, formula-neutralized.
func appendCSVRow(b []byte, r *storage.ExportRow) []byte {
	b = strconv.AppendInt(b, r.ID, 10)
	for _, f := range [][]byte{r.Platform, r.Serial, r.ActionType, r.ActionDetail, r.Username} {
		b = appendCSVField(append(b, ','), f, true)
	}
	b = strconv.AppendInt(append(b, ','), r.Unix, 10)
	b = time.Unix(r.Unix, 0).UTC().AppendFormat(append(b, ','), time.RFC3339)
	for _, f := range [][]byte{r.Source, r.SourceID, r.WorkspaceID} {
		b = appendCSVField(append(b, ','), f, true)
	}
	b = appendCSVField(append(b, ','), storage.AppendCompactJSON(nil, r.Extra), false) // JSON: starts with {
	return append(b, '\n')
}

// appendCSVField appends f as encoding/csv would, after inertCell's
// apostrophe when inert and f starts like a formula.
func appendCSVField(b, f []byte, inert bool) []byte {
	prefix := inert && len(f) > 0 && bytes.IndexByte([]byte("=+-@\t\r"), f[0]) >= 0
	first, _ := utf8.DecodeRune(f)
	if prefix {
		first = '\''
	}
	quote := len(f) > 0 && (bytes.IndexAny(f, ",\"\r\n") >= 0 || unicode.IsSpace(first) || (!prefix && string(f) == `\.`))
	if !quote {
		if prefix {
			b = append(b, '\'')
		}
		return append(b, f...)
	}
	b = append(b, '"')
	if prefix {
		b = append(b, '\'')
	}
	for {
		i := bytes.IndexByte(f, '"')
		if i < 0 {
			break
		}
		b = append(append(b, f[:i+1]...), '"')
		f = f[i+1:]
	}
	return append(append(b, f...), '"')
}

// appendNDJSONRow appends one record as toDetailJSON's object and a newline.
func appendNDJSONRow(b []byte, r *storage.ExportRow) []byte {
	b = strconv.AppendInt(append(b, `{"id":`...), r.ID, 10)
	for _, kv := range []struct {
		key string
		val []byte
	}{{"platform", r.Platform}, {"serial", r.Serial}, {"action_type", r.ActionType}, {"action_detail", r.ActionDetail}, {"username", r.Username}} {
		b = jsontext.AppendString(append(append(append(b, `,"`...), kv.key...), `":`...), kv.val)
	}
	b = strconv.AppendInt(append(b, `,"timestamp":`...), r.Unix, 10)
	b = jsontext.AppendString(append(b, `,"source":`...), r.Source)
	b = jsontext.AppendString(append(b, `,"source_id":`...), r.SourceID)
	b = jsontext.AppendString(append(b, `,"workspace_id":`...), r.WorkspaceID)
	b = storage.AppendCompactJSON(append(b, `,"extra":`...), r.Extra)
	b = strconv.AppendInt(append(b, `,"ingested_at":`...), r.IngestedUnix, 10)
	return append(b, "}\n"...)
}
