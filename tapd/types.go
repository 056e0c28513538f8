// Package tapd speaks TAPD's open API wire protocol and nothing else: it
// knows neither storage nor the sync algorithm.
package tapd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
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
	Status   string
	Category string
}

// flexInt accepts a JSON number, a numeric string, "" or null: TAPD sends
// perPage and currentPage as strings and totalItems as a number.
type flexInt int

func (n *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) || bytes.Equal(b, []byte(`""`)) {
		*n = 0
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(s)
	}
	v, err := strconv.Atoi(string(b))
	if err != nil {
		return fmt.Errorf("%s is not an integer", b)
	}
	*n = flexInt(v)
	return nil
}

// flexString accepts a string or a number (ids are strings, but be lenient).
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*s = ""
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
		return nil
	}
	var num json.Number
	if err := json.Unmarshal(b, &num); err != nil {
		return fmt.Errorf("%s is neither a string nor a number", b)
	}
	*s = flexString(num.String())
	return nil
}

// wire types: exactly what TAPD sends.
type wireEnvelope struct {
	Status flexInt         `json:"status"`
	Data   json.RawMessage `json:"data"`
	Info   string          `json:"info"`
}

type wirePage struct {
	PerPage        flexInt           `json:"perPage"`
	TotalItems     flexInt           `json:"totalItems"`
	CurrentPage    flexInt           `json:"currentPage"`
	Records        *[]wireRecord     `json:"records"`
	OperateTypes   map[string]string `json:"operate_types"`
	OperateObjects map[string]string `json:"operate_objects"`
}

type wireRecord struct {
	ID            flexString `json:"id"`
	Action        string     `json:"action"`
	Created       string     `json:"created"`
	Creator       string     `json:"creator"`
	ProjectName   string     `json:"project_name"`
	OperateType   string     `json:"operate_type"`
	OperateObject string     `json:"operate_object"`
	Title         string     `json:"title"`
	URL           string     `json:"url"`
	IP            string     `json:"ip"`
	UA            string     `json:"ua"`
}

type wireProjectEntry struct {
	Workspace *struct {
		ID       flexString `json:"id"`
		Name     string     `json:"name"`
		Status   string     `json:"status"`
		Category string     `json:"category"`
	} `json:"Workspace"`
}
