// Package tapd speaks TAPD's open API wire protocol and nothing else: it
// knows neither storage nor the sync algorithm.
package tapd

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TimeLayout is the layout of TAPD's `created` field.
const TimeLayout = "2006-01-02 15:04:05"

// QueryTimeLayout is the layout of start_time and end_time (minute precision).
const QueryTimeLayout = "2006-01-02 15:04"

// MaxLimit is TAPD's cap on records per page.
const MaxLimit = 200

// Query is every documented parameter of GET /workspaces/member_activity_log.
// Zero values are left out of the request.
type Query struct {
	WorkspaceID    string
	CompanyOnly    bool
	Limit          int
	Page           int
	Start          time.Time // start_time, truncated to the minute in the client's zone
	End            time.Time // end_time, likewise
	Operator       string
	OperateType    string // add, delete, download, upload
	OperatorObject string // story, bug, iteration, …
	IP             string
}

// Page is one page of member activity log.
type Page struct {
	PerPage        int
	TotalItems     int
	CurrentPage    int
	Records        []Record
	OperateTypes   map[string]string // key → localized label
	OperateObjects map[string]string
}

// Record is one activity as TAPD sends it; Created is parsed in the client's zone.
type Record struct {
	ID            string
	Action        string
	Created       time.Time
	CreatedRaw    string // created exactly as TAPD sent it
	Creator       string
	ProjectName   string
	OperateType   string // localized label, e.g. 新增
	OperateObject string // localized label, e.g. 迭代
	Title         string
	URL           string
	IP            string
	UA            string
}

// Project is one entry of GET /workspaces/projects.
type Project struct {
	ID       string
	Name     string
	Status   string // "normal", "closed" or "suspend"; a closed project's logs still expire
	Category string // often absent in real answers
}

// TAPD is a PHP service, and PHP's json_encode writes an empty array as []
// whether it stands for a list or an object, a missing value as null, and
// numbers as strings or numbers depending on where they came from. The
// types below accept every shape that means the same thing; unknown fields
// are ignored (encoding/json's default).

// flexInt accepts a JSON number, a numeric string, "", null, or PHP's empty
// array: TAPD sends perPage and currentPage as strings and totalItems as a
// number.
type flexInt int

func (n *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if isEmptyPHP(b) || bytes.Equal(b, []byte(`""`)) {
		*n = 0
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(strings.TrimSpace(s))
	}
	v, err := strconv.Atoi(string(b))
	if err != nil {
		// A float such as 3.0 (PHP sometimes computes totals as floats).
		f, ferr := strconv.ParseFloat(string(b), 64)
		if ferr != nil || f != float64(int(f)) {
			return fmt.Errorf("%s is not an integer", b)
		}
		v = int(f)
	}
	*n = flexInt(v)
	return nil
}

// flexString accepts a string, a number, a boolean, null or an empty array
// or object (PHP's empty value); any other array or object is kept as its
// JSON text, so an odd field never costs the whole page.
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case isEmptyPHP(b):
		*s = ""
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
	case len(b) > 0 && (b[0] == '[' || b[0] == '{'):
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			return err
		}
		*s = flexString(buf.String())
	default: // a number or a boolean, written as sent
		*s = flexString(b)
	}
	return nil
}

// isEmptyPHP reports whether b is null, [] or {}: what PHP sends for
// "nothing", whichever type was meant.
func isEmptyPHP(b []byte) bool {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return true
	}
	if len(b) < 2 || !(b[0] == '[' && b[len(b)-1] == ']' || b[0] == '{' && b[len(b)-1] == '}') {
		return false
	}
	return len(bytes.TrimSpace(b[1:len(b)-1])) == 0
}

// phpList is a JSON list, or what PHP makes of one: null or {} when empty,
// and an object keyed "0", "1", … when its keys are not consecutive (after
// array_filter, say), read in key order.
type phpList[T any] []T

func (l *phpList[T]) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case isEmptyPHP(b):
		*l = phpList[T]{}
		return nil
	case len(b) > 0 && b[0] == '[':
		var v []T
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*l = v
		return nil
	case len(b) > 0 && b[0] == '{':
		var m map[string]T
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, comparePHPKeys)
		out := make(phpList[T], 0, len(m))
		for _, k := range keys {
			out = append(out, m[k])
		}
		*l = out
		return nil
	}
	return fmt.Errorf("%s is not a list", snippet(b))
}

// comparePHPKeys orders numeric keys by value, then the others by text.
func comparePHPKeys(a, b string) int {
	na, errA := strconv.Atoi(a)
	nb, errB := strconv.Atoi(b)
	switch {
	case errA == nil && errB == nil:
		return cmp.Compare(na, nb)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// labelMap is a key → label map (operate_types, operate_objects): an object,
// or PHP's [] (or null) when empty. A non-empty list is what PHP makes of a
// map keyed 0, 1, …: read with those keys.
type labelMap map[string]string

func (m *labelMap) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	out := labelMap{}
	switch {
	case isEmptyPHP(b):
	case len(b) > 0 && b[0] == '[':
		var v []flexString
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		for i, label := range v {
			out[strconv.Itoa(i)] = string(label)
		}
	default:
		var v map[string]flexString
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		for k, label := range v {
			out[k] = string(label)
		}
	}
	*m = out
	return nil
}

// wireMeta is an answer's meta: {"request_id":"…"} (what TAPD support asks
// for), or anything else PHP may put there, which is ignored.
type wireMeta struct{ RequestID string }

func (m *wireMeta) UnmarshalJSON(b []byte) error {
	var v struct {
		RequestID flexString `json:"request_id"`
	}
	if json.Unmarshal(b, &v) == nil {
		m.RequestID = string(v.RequestID)
	}
	return nil
}

// wire types: exactly what TAPD sends.
type wireEnvelope struct {
	Status flexInt         `json:"status"`
	Data   json.RawMessage `json:"data"`
	Info   flexString      `json:"info"`
	Meta   wireMeta        `json:"meta"`
}

type wirePage struct {
	PerPage        flexInt             `json:"perPage"`
	TotalItems     flexInt             `json:"totalItems"`
	CurrentPage    flexInt             `json:"currentPage"`
	Records        phpList[wireRecord] `json:"records"`
	OperateTypes   labelMap            `json:"operate_types"`
	OperateObjects labelMap            `json:"operate_objects"`
}

// UnmarshalJSON reads a page, or PHP's [] for "no page": an empty result.
// Anything but an object or an empty value (a string such as TAPD's
// greeting, a number, a list of records) is refused.
func (p *wirePage) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if isEmptyPHP(b) && !bytes.Equal(b, []byte("null")) {
		*p = wirePage{Records: phpList[wireRecord]{}}
		return nil
	}
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("data is not a page of records: %s", snippet(b))
	}
	type plain wirePage // without this method
	var v plain
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.Records == nil {
		v.Records = phpList[wireRecord]{} // records absent: nothing on this page
	}
	*p = wirePage(v)
	return nil
}

type wireRecord struct {
	ID            flexString `json:"id"`
	Action        flexString `json:"action"`
	Created       flexString `json:"created"`
	Creator       flexString `json:"creator"`
	ProjectName   flexString `json:"project_name"`
	OperateType   flexString `json:"operate_type"`
	OperateObject flexString `json:"operate_object"`
	Title         flexString `json:"title"`
	URL           flexString `json:"url"`
	IP            flexString `json:"ip"`
	UA            flexString `json:"ua"`
}

type wireProjectEntry struct {
	Workspace *struct {
		ID       flexString `json:"id"`
		Name     flexString `json:"name"`
		Status   flexString `json:"status"`
		Category flexString `json:"category"`
	} `json:"Workspace"`
}
