// Package tapdtest is an in-process fake TAPD open API for tests and the demo.
//
// It implements member_activity_log and workspaces/projects as TAPD documents
// them (see shared/reference): Basic or Bearer auth, a company whose id lists
// all its projects' logs, company_only=1, newest-first paging with a limit cap
// of 200 and a page×limit cap, start_time defaulting to end_time−7 days, the
// one-calendar-month rule, the half-year horizon, string-typed perPage and
// currentPage, and TAPD's JSON encoding (\uXXXX escapes and \/). Knobs inject
// TAPD's faults: 429 with or without Retry-After, 500, 502 HTML pages, 503,
// truncated JSON, connection resets, slow answers, records that arrive while a
// client pages, and time travel that moves the horizon.
//
// Choices where TAPD is silent: start_time is inclusive and the end_time
// minute is inclusive (records up to hh:mm:59); a window outside the half
// year or spanning two months is a 422.
package tapdtest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Shanghai is TAPD's time zone.
var Shanghai = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		return time.FixedZone("CST", 8*3600)
	}
	return loc
}()

// Options shapes the generated company. Zero values take the defaults.
type Options struct {
	Seed                 uint64
	Now                  time.Time        // the fake clock's start; default: the real now
	Clock                func() time.Time // when set, the fake clock follows it (demo); Now is ignored
	CompanyID            string           // default "2001"
	Projects             int              // default 3
	Months               int              // history generated, default 8 (more than the half year)
	RecordsPerDay        int              // per project, default 20
	CompanyRecordsPerDay int              // company-level, default 2
	User, Password       string           // Basic Auth; default "bot" / "secret-pw"
	Token                string           // Bearer token accepted too; default "secret-token"
	PagingCap            int              // page×limit cap; default 20000
	HorizonDays          int              // default 182
}

// Project is a generated project.
type Project struct{ ID, Name string }

// Server is the fake TAPD.
type Server struct {
	*httptest.Server
	opts     Options
	projects []Project

	mu       sync.Mutex
	rng      *rand.Rand
	offset   time.Duration // time travel
	records  []Record      // every record ever generated, in id order
	byScope  map[string]*scopeIndex
	nextID   int
	requests []Request
	faults   faults
}

// Request is one call the fake answered, for assertions.
type Request struct {
	Path   string
	Query  url.Values
	Status int
	Fault  string // "" or the injected fault
}

// New starts a fake TAPD; it is closed in t.Cleanup when t is given via NewT.
func New(o Options) *Server {
	if o.CompanyID == "" {
		o.CompanyID = "2001"
	}
	if o.Projects == 0 {
		o.Projects = 3
	}
	if o.Months == 0 {
		o.Months = 8
	}
	if o.RecordsPerDay == 0 {
		o.RecordsPerDay = 20
	}
	if o.CompanyRecordsPerDay == 0 {
		o.CompanyRecordsPerDay = 2
	}
	if o.User == "" {
		o.User, o.Password = "bot", "secret-pw"
	}
	if o.Token == "" {
		o.Token = "secret-token"
	}
	if o.PagingCap == 0 {
		o.PagingCap = 20000
	}
	if o.HorizonDays == 0 {
		o.HorizonDays = 182
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	s := &Server{opts: o, rng: rand.New(rand.NewPCG(o.Seed, o.Seed^0x7a9d)), nextID: 7480000, byScope: map[string]*scopeIndex{}}
	names := []string{"西门子灌灌灌乐了路虎退货", "支付中台", "Mobile App 📱", "数据平台", "运维"}
	for i := range o.Projects {
		s.projects = append(s.projects, Project{ID: strconv.Itoa(10074561 + i), Name: names[i%len(names)]})
	}
	s.generate()
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// generate fills Months of history up to now.
func (s *Server) generate() {
	now := s.nowLocked()
	start := now.AddDate(0, -s.opts.Months, 0)
	var recs []Record
	for day := start; day.Before(now); day = day.Add(24 * time.Hour) {
		for _, p := range s.projects {
			for range s.opts.RecordsPerDay {
				recs = append(recs, newRecord(s.rng, p.ID, p.Name, false, day.Add(time.Duration(s.rng.Int64N(int64(24*time.Hour))))))
			}
		}
		for range s.opts.CompanyRecordsPerDay {
			recs = append(recs, newRecord(s.rng, s.opts.CompanyID, "", true, day.Add(time.Duration(s.rng.Int64N(int64(24*time.Hour))))))
		}
	}
	recs = slices.DeleteFunc(recs, func(r Record) bool { return r.Created.After(now) })
	slices.SortStableFunc(recs, func(a, b Record) int { return a.Created.Compare(b.Created) })
	for _, r := range recs {
		s.appendLocked(r)
	}
}

func (s *Server) appendLocked(r Record) Record {
	s.nextID++
	r.ID = strconv.Itoa(s.nextID)
	r.Created = r.Created.In(Shanghai).Truncate(time.Second)
	s.records = append(s.records, r)
	key := scopeKey(r.Workspace, r.CompanyLevel)
	idx := s.byScope[key]
	if idx == nil {
		idx = &scopeIndex{}
		s.byScope[key] = idx
	}
	if n := len(idx.rows); n > 0 && s.records[idx.rows[n-1]].Created.After(r.Created) {
		idx.unsorted = true // a late record: re-sort before the next query
	}
	idx.rows = append(idx.rows, len(s.records)-1)
	return r
}

// scopeIndex lists one workspace's records (positions in s.records) by
// creation time, so a window query is two binary searches, not a scan.
type scopeIndex struct {
	rows     []int
	unsorted bool
}

func scopeKey(workspace string, companyLevel bool) string {
	if companyLevel {
		return "company:" + workspace
	}
	return workspace
}

// inWindow returns the positions of a scope's records created in [from, to).
func (s *Server) inWindow(key string, from, to time.Time) []int {
	idx := s.byScope[key]
	if idx == nil {
		return nil
	}
	if idx.unsorted {
		slices.SortStableFunc(idx.rows, func(a, b int) int { return s.records[a].Created.Compare(s.records[b].Created) })
		idx.unsorted = false
	}
	lo, _ := slices.BinarySearchFunc(idx.rows, from, func(i int, t time.Time) int { return s.records[i].Created.Compare(t) })
	hi, _ := slices.BinarySearchFunc(idx.rows, to, func(i int, t time.Time) int { return s.records[i].Created.Compare(t) })
	return idx.rows[lo:max(lo, hi)]
}

// Now is the fake's clock.
func (s *Server) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nowLocked()
}

func (s *Server) nowLocked() time.Time {
	base := s.opts.Now
	if s.opts.Clock != nil {
		base = s.opts.Clock()
	}
	return base.Add(s.offset).In(Shanghai)
}

// Advance moves the fake clock (and so TAPD's half-year horizon) forward.
func (s *Server) Advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
}

// Horizon is the oldest instant TAPD still answers for.
func (s *Server) Horizon() time.Time {
	return s.Now().AddDate(0, 0, -s.opts.HorizonDays)
}

// CompanyID is the generated company's id.
func (s *Server) CompanyID() string { return s.opts.CompanyID }

// Projects are the generated projects.
func (s *Server) Projects() []Project { return slices.Clone(s.projects) }

// Credentials returns the accepted Basic Auth user and password.
func (s *Server) Credentials() (user, password string) { return s.opts.User, s.opts.Password }

// Token returns the accepted Bearer token.
func (s *Server) Token() string { return s.opts.Token }

// Truth returns every record the fake ever generated, oldest id first.
func (s *Server) Truth() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.records)
}

// AddRecords appends n new records in workspace (a project id, or the
// company id for company-level logs) created at the given time.
func (s *Server) AddRecords(workspace string, at time.Time, n int) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, companyLevel := s.projectName(workspace)
	out := make([]Record, 0, n)
	for range n {
		out = append(out, s.appendLocked(newRecord(s.rng, workspace, name, companyLevel, at)))
	}
	return out
}

func (s *Server) projectName(workspace string) (string, bool) {
	for _, p := range s.projects {
		if p.ID == workspace {
			return p.Name, false
		}
	}
	return "", true
}

// Requests returns the calls answered so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ResetRequests forgets the request log.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// Queryable returns what TAPD would answer right now for a workspace (a
// project id; or the company id with companyOnly) over the whole half year,
// newest first.
func (s *Server) Queryable(workspace string, companyOnly bool) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.nowLocked()
	rows := s.selectLocked(workspace, companyOnly, now.AddDate(0, 0, -s.opts.HorizonDays), now.Add(time.Minute), url.Values{})
	out := make([]Record, len(rows))
	for i, at := range rows {
		out[i] = s.records[at]
	}
	return out
}

// selectLocked filters records to [from, to) and the query's filters and
// returns their positions in s.records, newest first.
func (s *Server) selectLocked(workspace string, companyOnly bool, from, to time.Time, q url.Values) []int {
	scopes := []string{workspace} // a project
	switch {
	case companyOnly:
		scopes = []string{scopeKey(workspace, true)}
	case workspace == s.opts.CompanyID: // a company id without company_only lists its projects' logs
		scopes = scopes[:0]
		for _, p := range s.projects {
			scopes = append(scopes, p.ID)
		}
	}
	operator, typ, object, ip := q.Get("operator"), q.Get("operate_type"), q.Get("operator_object"), q.Get("ip")
	var out []int
	for _, key := range scopes {
		for _, i := range s.inWindow(key, from, to) {
			r := &s.records[i]
			if operator != "" && r.Creator != operator || typ != "" && r.TypeKey != typ ||
				object != "" && r.ObjectKey != object || ip != "" && r.IP != ip {
				continue
			}
			out = append(out, i)
		}
	}
	// Records are appended in id order, so a later position is a larger id.
	slices.SortFunc(out, func(a, b int) int {
		return cmp.Or(s.records[b].Created.Compare(s.records[a].Created), cmp.Compare(b, a))
	})
	return out
}

func (s *Server) knownWorkspace(id string) bool {
	if id == s.opts.CompanyID {
		return true
	}
	_, companyLevel := s.projectName(id)
	return !companyLevel
}

// String describes the fake for logs.
func (s *Server) String() string {
	return fmt.Sprintf("fake TAPD at %s (company %s, %d projects)", s.URL, s.opts.CompanyID, len(s.projects))
}
