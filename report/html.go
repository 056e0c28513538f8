package report

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"
	// The page shows times in the report's zone, and verify-report renders
	// it again wherever it runs: the zone must not depend on the machine.
	_ "time/tzdata"
)

//go:embed templates/report.html
var templates embed.FS

var page = template.Must(template.New("report.html").Funcs(template.FuncMap{
	"path":  func(format string, args ...any) string { return fmt.Sprintf(format, args...) },
	"deref": func(p *int64) int64 { return *p },
}).ParseFS(templates, "templates/report.html"))

// Languages are the languages the page is written in.
var Languages = []string{"en", "zh"}

func (r Report) location() *time.Location {
	if loc, err := time.LoadLocation(r.Period.Timezone); err == nil {
		return loc
	}
	return time.UTC
}

// display is how the page shows a signed value (its JSON text): numbers
// with thousands separators, times in the report's zone to the minute.
// verify-report formats the signed value the same way to compare.
func display(v string, loc *time.Location) string {
	switch {
	case v == "null":
		return "—"
	case v == "true":
		return "✓"
	case v == "false":
		return "✗"
	case strings.HasPrefix(v, `"`):
		var s string
		if json.Unmarshal([]byte(v), &s) != nil {
			return v
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t.In(loc).Format("2006-01-02 15:04")
		}
		return s
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return thousands(n)
	}
	return v
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// view is what the template reads: the report, its signed values by path,
// the words of one language and the coverage chart's geometry.
type view struct {
	R      Report
	Lang   string
	values map[string]string
	loc    *time.Location
	words  map[string]string
	Doc    template.JS
	Charts []chart
}

type chart struct {
	Target string
	Parts  []chartPart
}

type chartPart struct {
	Kind  string
	Left  string // percent of the period
	Width string
	Title string
}

// Cell shows the signed value at path, marked with its path.
func (v view) Cell(path string) template.HTML {
	raw, ok := v.values[path]
	if !ok {
		return template.HTML(`<span class="missing">?</span>`)
	}
	return template.HTML(`<span data-field="` + template.HTMLEscapeString(path) + `">` +
		template.HTMLEscapeString(display(raw, v.loc)) + `</span>`)
}

// Has reports whether the signed report has a value at path (not null).
func (v view) Has(path string) bool {
	raw, ok := v.values[path]
	return ok && raw != "null"
}

// T is a word of the page's language.
func (v view) T(key string) string {
	if w, ok := v.words[key]; ok {
		return w
	}
	return words["en"][key]
}

// Time formats t as the page does.
func (v view) Time(t time.Time) string { return t.In(v.loc).Format("2006-01-02 15:04") }

// HTML writes the report's page in lang (en or zh), embedding the signed document.
func HTML(w io.Writer, d Document, lang string) error {
	if _, ok := words[lang]; !ok {
		return fmt.Errorf("no report language %q (use %s)", lang, strings.Join(Languages, " or "))
	}
	var r Report
	if err := json.Unmarshal(d.Report, &r); err != nil {
		return fmt.Errorf("reading the report: %w", err)
	}
	fields, err := flatten(d.Report)
	if err != nil {
		return err
	}
	doc, err := json.Marshal(d) // escapes <, > and &: safe inside the script element
	if err != nil {
		return err
	}
	v := view{R: r, Lang: lang, values: map[string]string{}, loc: r.location(), words: words[lang], Doc: template.JS(doc)}
	for _, f := range fields {
		v.values[f.path] = f.value
	}
	span := r.Period.End.Sub(r.Period.Start)
	for _, t := range r.Targets {
		c := chart{Target: t.Target}
		for _, s := range t.Coverage {
			c.Parts = append(c.Parts, chartPart{Kind: s.Kind,
				Left:  pct(s.Start.Sub(r.Period.Start), span),
				Width: pct(s.End.Sub(s.Start), span),
				Title: v.T("seg."+s.Kind) + ": " + v.Time(s.Start) + " – " + v.Time(s.End)})
		}
		v.Charts = append(v.Charts, c)
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, v); err != nil {
		return fmt.Errorf("writing the report page: %w", err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}

func pct(d, of time.Duration) string {
	if of <= 0 {
		return "0%"
	}
	return strconv.FormatFloat(100*float64(d)/float64(of), 'f', 3, 64) + "%"
}
