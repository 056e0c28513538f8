package report

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tapd-mirror/tapd-mirror/integrity"
)

// Document is the report file for tools: the report as shown, the exact
// bytes that were signed (base64), and the signed note over their SHA-256.
// verify-report checks the note, the hash, and then the shown report
// against the signed one field by field, so that a changed number is named.
type Document struct {
	Format    string          `json:"format"`
	Report    json.RawMessage `json:"report"`
	Signed    string          `json:"signed_report"`
	Signature string          `json:"signature"`
}

// noteHeader is the first line of a report's signed note; the second is
// "sha256 " and the hash of the signed bytes.
const noteHeader = "tapd-mirror completeness report"

// ErrMismatch means a report does not match its signature; the error names
// the first field that differs.
var ErrMismatch = errors.New("the report does not match its signature")

// Sign encodes r canonically (encoding/json: struct order, UTC times) and signs it.
func Sign(r Report, key *integrity.Key) (Document, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return Document{}, fmt.Errorf("encoding the report: %w", err)
	}
	sum := sha256.Sum256(body)
	sig, err := key.SignNote(noteHeader + "\nsha256 " + hex.EncodeToString(sum[:]) + "\n")
	if err != nil {
		return Document{}, err
	}
	return Document{Format: Format, Report: body, Signed: base64.StdEncoding.EncodeToString(body), Signature: string(sig)}, nil
}

// JSON is the document's file content.
func (d Document) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(d, "", " ")
	if err != nil {
		return nil, fmt.Errorf("encoding the report document: %w", err)
	}
	return append(b, '\n'), nil
}

// Verify checks a report file, JSON or HTML, against the verifier key,
// offline. It returns the signed report when everything matches; otherwise
// an error that names what does not (ErrMismatch with the field's path for
// a changed value). A page must be, byte for byte, the page the signed
// report makes: rows, chart and words are checked as well as the values.
func Verify(file []byte, verifierKey string) (Report, error) {
	var r Report
	isHTML := bytes.Contains(file, []byte(scriptOpen))
	raw := file
	if isHTML {
		var err error
		if raw, err = embedded(file); err != nil {
			return r, err
		}
	}
	var d Document
	if err := json.Unmarshal(raw, &d); err != nil {
		return r, fmt.Errorf("not a tapd-mirror report: %w", err)
	}
	if d.Format != Format {
		return r, fmt.Errorf("not a tapd-mirror report of format %s (format %q)", Format, d.Format)
	}
	text, err := integrity.OpenNote([]byte(d.Signature), verifierKey)
	if err != nil {
		return r, err
	}
	hash, ok := strings.CutPrefix(text, noteHeader+"\nsha256 ")
	if !ok {
		return r, fmt.Errorf("the signature is not over a report: %q", text)
	}
	signed, err := base64.StdEncoding.DecodeString(d.Signed)
	if err != nil {
		return r, fmt.Errorf("%w: signed_report is not base64: %v", ErrMismatch, err)
	}
	if sum := sha256.Sum256(signed); strings.TrimSpace(hash) != hex.EncodeToString(sum[:]) {
		return r, fmt.Errorf("%w: signed_report was altered (its SHA-256 is not the one signed)", ErrMismatch)
	}
	if err := json.Unmarshal(signed, &r); err != nil {
		return r, fmt.Errorf("reading the signed report: %w", err)
	}
	want, err := flatten(signed)
	if err != nil {
		return r, err
	}
	got, err := flatten(d.Report)
	if err != nil {
		return r, fmt.Errorf("%w: the report shown is not JSON: %v", ErrMismatch, err)
	}
	if err := compare(want, got, "report"); err != nil {
		return r, err
	}
	if isHTML {
		if err := compareCells(file, want, r); err != nil {
			return r, err
		}
		verified := Document{Format: d.Format, Report: signed, Signed: d.Signed, Signature: d.Signature}
		if err := samePage(file, verified, want); err != nil {
			return r, err
		}
	}
	for i, c := range r.Integrity.Checkpoints {
		if err := checkCheckpoint(c, verifierKey); err != nil {
			return r, fmt.Errorf("integrity.checkpoints[%d]: %w", i, err)
		}
	}
	if c := r.Integrity.Covering; c != nil {
		if err := checkCheckpoint(*c, verifierKey); err != nil {
			return r, fmt.Errorf("integrity.covering: %w", err)
		}
	}
	return r, nil
}

func checkCheckpoint(c Checkpoint, key string) error {
	cp, err := integrity.OpenCheckpoint([]byte(c.Note), key)
	if err != nil {
		return err
	}
	if cp.Size != c.Size || cp.Root.String() != c.Root {
		return fmt.Errorf("the signed checkpoint is of size %d root %s, the report says size %d root %s", cp.Size, cp.Root, c.Size, c.Root)
	}
	return nil
}

// field is one scalar of a JSON document at its path.
type field struct {
	path, value string // value: the JSON text of the scalar
}

// flatten lists a JSON document's scalars in document order, each at its
// path (targets[3].months[1].mirror_count).
func flatten(doc []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var out []field
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				for dec.More() {
					k, err := dec.Token()
					if err != nil {
						return err
					}
					p := k.(string)
					if path != "" {
						p = path + "." + p
					}
					if err := walk(p); err != nil {
						return err
					}
				}
				_, err = dec.Token()
				return err
			case '[':
				for i := 0; dec.More(); i++ {
					if err := walk(path + "[" + strconv.Itoa(i) + "]"); err != nil {
						return err
					}
				}
				_, err = dec.Token()
				return err
			}
		case json.Number:
			out = append(out, field{path, t.String()})
		case string:
			b, _ := json.Marshal(t)
			out = append(out, field{path, string(b)})
		case bool:
			out = append(out, field{path, strconv.FormatBool(t)})
		case nil:
			out = append(out, field{path, "null"})
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON document")
	}
	return out, nil
}

// compare names the first field of want that got lacks or shows
// differently, then the first field got adds.
func compare(want, got []field, where string) error {
	shown := make(map[string]string, len(got))
	for _, f := range got {
		shown[f.path] = f.value
	}
	signed := make(map[string]bool, len(want))
	for _, f := range want {
		signed[f.path] = true
		v, ok := shown[f.path]
		switch {
		case !ok:
			return fmt.Errorf("%w: %s: missing from the %s (signed: %s)", ErrMismatch, f.path, where, f.value)
		case v != f.value:
			return fmt.Errorf("%w: %s: the %s says %s, the signed report %s", ErrMismatch, f.path, where, v, f.value)
		}
	}
	for _, f := range got {
		if !signed[f.path] {
			return fmt.Errorf("%w: %s: in the %s but not in the signed report", ErrMismatch, f.path, where)
		}
	}
	return nil
}

// The HTML page carries the document in a script element and marks every
// value it shows with the value's path (data-field), so that a number
// changed in the page is named as well as one changed in the JSON.
const (
	scriptOpen  = `<script type="application/json" id="tapd-mirror-report">`
	scriptClose = `</script>`
)

func embedded(page []byte) ([]byte, error) {
	_, rest, ok := bytes.Cut(page, []byte(scriptOpen))
	if !ok {
		return nil, errors.New("the page holds no report")
	}
	doc, _, ok := bytes.Cut(rest, []byte(scriptClose))
	if !ok {
		return nil, errors.New("the page's report is cut short")
	}
	return doc, nil
}

var cellRE = regexp.MustCompile(`data-field="([^"]*)"[^>]*>([^<]*)<`)

// compareCells checks every value the page shows against the signed one,
// formatted as the page formats it.
func compareCells(page []byte, want []field, r Report) error {
	values := make(map[string]string, len(want))
	for _, f := range want {
		values[f.path] = f.value
	}
	loc := r.location()
	for _, m := range cellRE.FindAllSubmatch(page, -1) {
		path, text := html.UnescapeString(string(m[1])), strings.TrimSpace(html.UnescapeString(string(m[2])))
		v, ok := values[path]
		if !ok {
			return fmt.Errorf("%w: %s: the page shows a value the signed report does not have", ErrMismatch, path)
		}
		if d := display(v, loc); d != text {
			return fmt.Errorf("%w: %s: the page shows %q, the signed report %q", ErrMismatch, path, text, d)
		}
	}
	return nil
}

var (
	markedCellRE = regexp.MustCompile(`<span data-field="([^"]*)">[^<]*</span>`)
	pageLangRE   = regexp.MustCompile(`<html lang="([^"]*)"`)
)

// samePage renders the verified document again as the report command does
// (in the page's language, else in each) and requires the page to be that
// rendering: a value the page hides, a row it drops or a chart it recolours
// is not in a signed cell, so compareCells cannot see it. The error names
// the signed field where the page first differs when there is one.
func samePage(page []byte, d Document, want []field) error {
	langs := Languages
	if m := pageLangRE.FindSubmatch(page); m != nil && slices.Contains(Languages, string(m[1])) {
		langs = []string{string(m[1])}
	}
	var made []byte
	at := -1
	for _, lang := range langs {
		var b bytes.Buffer
		if err := HTML(&b, d, lang); err != nil {
			return fmt.Errorf("rendering the signed report again: %w", err)
		}
		if bytes.Equal(b.Bytes(), page) {
			return nil
		}
		if i := firstDiff(b.Bytes(), page); i > at {
			made, at = b.Bytes(), i
		}
	}
	values := make(map[string]string, len(want))
	for _, f := range want {
		values[f.path] = f.value
	}
	cells := markedCellRE.FindAllSubmatchIndex(made, -1)
	for _, c := range cells {
		if c[0] <= at && at < c[1] {
			path := html.UnescapeString(string(made[c[2]:c[3]]))
			return fmt.Errorf("%w: %s: the page alters the cell that shows it (signed: %s)", ErrMismatch, path, values[path])
		}
	}
	shown := map[string]int{}
	for _, m := range cellRE.FindAllSubmatch(page, -1) {
		shown[html.UnescapeString(string(m[1]))]++
	}
	for _, c := range cells {
		path := html.UnescapeString(string(made[c[2]:c[3]]))
		if shown[path] == 0 {
			return fmt.Errorf("%w: %s: missing from the page (signed: %s)", ErrMismatch, path, values[path])
		}
		shown[path]--
	}
	return fmt.Errorf("%w: the page was altered outside the signed fields: line %d (byte %d) shows %q where the signed report makes %q "+
		"(a page made by another version of tapd-mirror, or saved again by a browser or editor, differs too)",
		ErrMismatch, 1+bytes.Count(made[:at], []byte("\n")), at, excerpt(page, at), excerpt(made, at))
}

// firstDiff is the offset of the first byte where a and b differ (the
// shorter one's length if it is the other's beginning).
func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func excerpt(b []byte, at int) string {
	return string(b[at:min(len(b), at+40)])
}
