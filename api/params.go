package api

import (
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

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
		return query{}, errorf(http.StatusBadRequest, "malformed query string: %v", err)
	}
	var unknown []string
	for name, vals := range v {
		if !slices.Contains(allowed, name) {
			unknown = append(unknown, name)
		}
		if len(vals) > 1 {
			return query{}, errorf(http.StatusBadRequest, "parameter %q is given %d times; give it once", name, len(vals))
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return query{}, errorf(http.StatusBadRequest, "unknown parameter(s) %s; allowed: %s",
			strings.Join(unknown, ", "), strings.Join(allowed, ", "))
	}
	return query{v: v}, nil
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
		return 0, errorf(http.StatusBadRequest, "parameter %s must be an integer, got %q", name, raw[0])
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
	return false, errorf(http.StatusBadRequest, "parameter %s must be 1 or 0, got %q", name, q.str(name))
}

// filterParams are the filters shared by list, count and export.
var filterParams = []string{"platform", "serial", "action_type", "username", "source", "since", "until"}

func (q query) filter() (storage.Filter, error) {
	f := storage.Filter{
		Platform:   q.str("platform"),
		Serial:     q.str("serial"),
		ActionType: q.str("action_type"),
		Username:   q.str("username"),
		Source:     q.str("source"),
	}
	if f.Source != "" && f.Source != storage.SourceLocal && f.Source != storage.SourceTAPD {
		return f, errorf(http.StatusBadRequest, "parameter source must be %q or %q, got %q", storage.SourceLocal, storage.SourceTAPD, f.Source)
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		sec, err := q.int(p.name, 0, 0, maxInt)
		if err != nil {
			return f, err
		}
		if _, set := q.v[p.name]; set {
			*p.dst = time.Unix(sec, 0).UTC()
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, errorf(http.StatusBadRequest, "since (%d) must be before until (%d)", f.Since.Unix(), f.Until.Unix())
	}
	return f, nil
}

// filterQuery reads the shared filters plus the endpoint's own parameters.
func filterQuery(r *http.Request, own ...string) (query, storage.Filter, error) {
	q, err := parseQuery(r, append(own, filterParams...)...)
	if err != nil {
		return q, storage.Filter{}, err
	}
	f, err := q.filter()
	return q, f, err
}

// pathID reads the positive integer {id} of the path; what names it in errors.
func pathID(r *http.Request, what string) (int64, error) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, errorf(http.StatusBadRequest, "%s must be a positive integer, got %q", what, raw)
	}
	return id, nil
}
