package api

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// query reads URL parameters, rejecting unknown names so that a typo such as
// "platfrom" is an error instead of a silently unfiltered answer.
type query struct {
	v url.Values
}

func parseQuery(r *http.Request, allowed ...string) (query, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return query{}, errorf(http.StatusBadRequest, "malformed query string: %s", clip(err.Error()))
	}
	var unknown []string
	for name, vals := range v {
		if !slices.Contains(allowed, name) {
			unknown = append(unknown, name)
		}
		if len(vals) > 1 {
			return query{}, errorf(http.StatusBadRequest, "parameter %q is given %d times; give it once", clip(name), len(vals))
		}
		for _, text := range []string{name, vals[0]} {
			if problem := badText(text, false); problem != "" {
				return query{}, errorf(http.StatusBadRequest, "parameter %q %s", clip(name), problem)
			}
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return query{}, errorf(http.StatusBadRequest, "unknown parameter(s) %s; allowed: %s",
			clip(strings.Join(unknown, ", ")), strings.Join(allowed, ", "))
	}
	return query{v: v}, nil
}

// badText says what is wrong with client text, or "" when nothing is:
// invalid UTF-8 and control characters are refused (they corrupt logs,
// spreadsheets and PostgreSQL refuses NUL); multiline text may hold tabs and
// newlines.
func badText(s string, multiline bool) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for i, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\t' || r == '\n')) {
			allowed := "no control characters are allowed"
			if multiline {
				allowed = "only tab and newline are allowed"
			}
			return fmt.Sprintf("contains the control character %U at byte %d; %s", r, i, allowed)
		}
	}
	return ""
}

// Times are Unix seconds from 1 (1970-01-01T00:00:01Z) to the last second
// of year 9999, which both databases store and Go formats.
const (
	minUnix = 1
	maxUnix = 253402300799
)

func validUnix(sec int64) bool { return sec >= minUnix && sec <= maxUnix }

// unix reads an optional time parameter in Unix seconds; zero when absent.
func (q query) unix(name string) (time.Time, error) {
	if _, set := q.v[name]; !set {
		return time.Time{}, nil
	}
	sec, err := q.int(name, 0, -maxInt-1, maxInt)
	if err != nil {
		return time.Time{}, err
	}
	if !validUnix(sec) {
		return time.Time{}, errorf(http.StatusBadRequest, "parameter %s must be Unix seconds from %d to %d (the end of year 9999), got %d", name, minUnix, maxUnix, sec)
	}
	return time.Unix(sec, 0).UTC(), nil
}

func (q query) str(name string) string { return q.v.Get(name) }

// int reads an integer parameter within [lo, hi], or def when absent.
func (q query) int(name string, def, lo, hi int64) (int64, error) {
	raw, ok := q.v[name]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(raw[0]), 10, 64)
	if err != nil {
		return 0, errorf(http.StatusBadRequest, "parameter %s must be an integer, got %q", name, clip(raw[0]))
	}
	if n < lo || n > hi {
		if hi == maxInt {
			return 0, errorf(http.StatusBadRequest, "parameter %s must be at least %d, got %d", name, lo, n)
		}
		return 0, errorf(http.StatusBadRequest, "parameter %s must be between %d and %d, got %d", name, lo, hi, n)
	}
	return n, nil
}

const maxInt = int64(^uint64(0) >> 1)

// flag reads a boolean parameter: 1/true or 0/false.
func (q query) flag(name string) (bool, error) {
	switch q.str(name) {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	}
	return false, errorf(http.StatusBadRequest, "parameter %s must be 1 or 0, got %q", name, clip(q.str(name)))
}

// filterParams are the filters shared by list, count and export.
var filterParams = []string{"platform", "serial", "action_type", "username", "source", "since", "until", "object", "ip", "q"}

// maxQuery bounds q: a longer substring names no real title, and each
// character costs the text index work.
const maxQuery = 200

func (q query) filter() (storage.Filter, error) {
	f := storage.Filter{
		Platform:   q.str("platform"),
		Serial:     q.str("serial"),
		ActionType: q.str("action_type"),
		Username:   q.str("username"),
		Source:     q.str("source"),
		Object:     q.str("object"),
		IP:         q.str("ip"),
		Query:      q.str("q"),
	}
	if n := utf8.RuneCountInString(f.Query); n > maxQuery {
		return f, errorf(http.StatusBadRequest, "parameter q must be at most %d characters, got %d", maxQuery, n)
	}
	if f.Source != "" && f.Source != storage.SourceLocal && f.Source != storage.SourceTAPD {
		return f, errorf(http.StatusBadRequest, "parameter source must be %q or %q, got %q", storage.SourceLocal, storage.SourceTAPD, clip(f.Source))
	}
	var err error
	if f.Since, err = q.unix("since"); err != nil {
		return f, err
	}
	if f.Until, err = q.unix("until"); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, errorf(http.StatusBadRequest, "since (%d) must be before until (%d)", f.Since.Unix(), f.Until.Unix())
	}
	return f, nil
}

// detailFilters filter on fields of TAPD's extra that only detail=1 shows.
// Answering them would let anyone confirm a record's IP (or object) one
// guess at a time, so they need what detail=1 needs. source stays open: it
// is the archive's own provenance, not a person's data, and mirrored records
// already say so in the contract's platform ("tapd").
var detailFilters = []string{"ip", "object"}

// filterQuery reads the shared filters plus the endpoint's own parameters.
func filterQuery(r *http.Request, own ...string) (query, storage.Filter, error) {
	q, err := parseQuery(r, append(own, filterParams...)...)
	if err != nil {
		return q, storage.Filter{}, err
	}
	f, err := q.filter()
	return q, f, err
}

// readFilters is filterQuery for list and count, whose detail filters (if
// any) it permits; export needs the read scope anyway.
func (s *Server) readFilters(r *http.Request, own ...string) (query, storage.Filter, error) {
	q, f, err := filterQuery(r, own...)
	if err != nil {
		return q, f, err
	}
	var used []string
	for _, name := range detailFilters {
		if q.str(name) != "" {
			used = append(used, name)
		}
	}
	if len(used) > 0 {
		noteDetail(r.Context())
		err = s.permit(r, rule{scope: config.ScopeRead, open: true,
			what: "filtering by " + strings.Join(used, ", ") + " (fields only detail=1 shows)"})
	}
	return q, f, err
}

// pathID reads the positive integer {id} of the path; what names it in errors.
func pathID(r *http.Request, what string) (int64, error) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, errorf(http.StatusBadRequest, "%s must be a positive integer, got %q", what, clip(raw))
	}
	return id, nil
}
