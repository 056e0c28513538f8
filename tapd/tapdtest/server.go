// Package tapdtest is an in-process fake TAPD open API for tests and the demo.
//
// It implements member_activity_log, workspaces/projects and the OAuth
// client-credentials grant (POST /tokens/request_token) as TAPD documents
// them (see shared/reference): Basic or Bearer auth, a company whose id lists
// all its projects' logs, company_only=1, newest-first paging with a limit cap
// of 200 and a page×limit cap, start_time defaulting to end_time−7 days, the
// one-calendar-month rule, the half-year horizon (HorizonDays calendar days
// before now, counted in Asia/Shanghai), string-typed perPage and
// currentPage, and TAPD's JSON encoding (\uXXXX escapes, \/ and \u0000).
//
// Knobs inject TAPD's faults and undocumented corners:
//   - FailNext, RateLimitStorm, SetFaults, SetRateLimit, SetLatency: 429 with
//     or without Retry-After, 500, 502 HTML pages, 503, truncated JSON,
//     connection resets, slow answers.
//   - FailWhen, FailWindow: a query (a window) that fails every time until
//     cleared; Options.FailPagesAbove: pages larger than a limit fail with 500.
//   - Options.MaxPerPage: TAPD pages smaller than asked, saying so in perPage.
//   - Options.EndExclusive: end_time hh:mm stops before hh:mm:00.
//   - Options.HorizonClamp: a too-old start_time answers from the horizon
//     instead of 422.
//   - Options.CompanyWideIncludesCompanyLevel: the company-wide query also
//     returns company-level logs; Options.CompanyQuietSince: no company-level
//     records from then on (a quiet start of a month).
//   - SetArrivals, AddRecords, AddRecord: records that arrive while a client
//     pages, records that show up hours after their created time, records
//     with hostile titles or creators (NUL, lone surrogates, invalid UTF-8).
//   - Advance: time travel that moves the horizon and expires OAuth tokens;
//     RevokeTokens; Options.TokenRejectStatus: 401 or 422 for a bad token.
//   - Options.HorizonDays, Options.PagingCap: TAPD's limits.
//   - SetPenalty: after one 429, every request is refused for minutes (on
//     the fake's clock), as TAPD penalises an account.
//   - SetQuotaHeaders: a fixed-window quota announced with
//     X-RateLimit-Limit / X-RateLimit-Remaining (and, optionally, Reset).
//   - Options.HorizonError: another wording of the horizon's 422.
//   - Options.PHPEmpty: an empty page as PHP may encode it (data [] or {},
//     records null or {}, label maps []).
//   - Options.CaptureProjectList, SetProjectStatus: the projects list as a
//     real capture shows it (the company among them, no category), closed
//     projects.
//   - Every JSON answer carries meta.request_id (Request.RequestID), as
//     TAPD's do; an unknown path answers "Hello world from TAPD API" even
//     without credentials.
//   - Options.TimePerRequest, PlaceNearHorizon: a horizon that moves as the
//     client spends its quota, and dense records just after it.
//
// Choices where TAPD is silent:
//   - start_time is inclusive; the end_time minute is inclusive (records up
//     to hh:mm:59) unless EndExclusive.
//   - Order is created descending, then id descending.
//   - A start_time before the horizon's minute is a 422 (checked first), so
//     is a window spanning two months or ending before it starts. With
//     HorizonClamp the month rule is checked on the start as asked, before
//     it is raised, and a window wholly before the horizon is an empty page.
//   - MaxPerPage also governs paging: page N holds records
//     (N−1)×perPage … N×perPage−1 and the page×limit cap uses perPage.
//   - FailPagesAbove compares the limit asked (20 when absent), not the
//     limit applied, and fails with the Fault500 envelope.
//   - FailWhen and FailWindow apply only to member_activity_log; the other
//     faults to every path, token requests included.
//   - OAuth: tokens are 40 hex digits; the answer is TAPD's documented shape
//     (access_token, expires_in as a number, token_type "Bearer", scope,
//     resource, now). Wrong client credentials are HTTP 401 "The client
//     credentials are invalid"; a grant_type other than client_credentials
//     is 422; a method other than POST is 405. An unknown token is refused
//     with "The access token provided is invalid", an expired one with "The
//     access token provided has expired" (the wording of PHP's common
//     OAuth2 server), as 422 by default or 401 with WWW-Authenticate:
//     Bearer error="invalid_token". The personal Token never expires.
//   - Raw invalid UTF-8 and lone surrogate escapes are only sent for a
//     planted Record.TitleJSON; Go's encoding/json decodes each invalid
//     byte and each lone surrogate to U+FFFD.
package tapdtest

import (
	"context"
	"encoding/json"
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
	// CompanyQuietSince, when set, generates no company-level records at or
	// after it: a company whose own log is quiet this month (or since).
	CompanyQuietSince time.Time
	User, Password    string // Basic Auth; default "bot" / "secret-pw"
	Token             string // personal Bearer token, never expires; default "secret-token"
	PagingCap         int    // page×limit cap; default 20000
	HorizonDays       int    // default 182

	// EndExclusive makes end_time hh:mm mean "before hh:mm:00"; by default
	// the end minute is inclusive (through hh:mm:59).
	EndExclusive bool
	// HorizonClamp makes a start_time older than the horizon answer from
	// the horizon's minute instead of failing with 422.
	HorizonClamp bool
	// MaxPerPage, when > 0, caps limit below TAPD's 200; perPage reports
	// the cap actually applied.
	MaxPerPage int
	// FailPagesAbove, when > 0, fails every activity-log request whose
	// limit (default 20) exceeds it with HTTP 500, every time.
	FailPagesAbove int
	// HorizonError is the info of the 422 for a start_time before the
	// horizon; default TAPD's "start_time 只能查最近半年内的数据". TAPD's real
	// wording was never captured: tests set another to prove a client does
	// not depend on it.
	HorizonError string
	// PHPEmpty, when set, answers a page without records the way PHP's
	// json_encode may: data [] or {}, or records null or {} with the label
	// maps (operate_types, operate_objects) as []. Default: records [] and
	// full label maps.
	PHPEmpty PHPEmpty
	// CaptureProjectList answers GET /workspaces/projects in the shape of a
	// real capture: the company among its projects, no category field on
	// any entry, member_count a number, null dates. Default: TAPD's
	// documented shape, the company as category "organization".
	CaptureProjectList bool
	// TimePerRequest moves the fake's clock (and so the horizon) forward by
	// this much after every member_activity_log answer: a client at TAPD's
	// quota, e.g. 1s per request at 60/min, on a clock that needs no real
	// waiting. With PlaceNearHorizon it makes a backfill race the horizon.
	TimePerRequest time.Duration
	// CompanyWideIncludesCompanyLevel makes the company-wide query
	// (workspace_id = company id, no company_only) also return the
	// company-level logs; by default it returns only its projects' logs.
	CompanyWideIncludesCompanyLevel bool

	// OAuth app (POST /tokens/request_token); default "tapd-mirror-app" / "app-secret".
	ClientID, ClientSecret string
	// TokenLifetime is expires_in of issued tokens, on the fake's clock; default 7200s.
	TokenLifetime time.Duration
	// TokenRejectStatus is how an unknown or expired Bearer token is
	// refused: 422 (default, status 422 in the body) or 401.
	TokenRejectStatus int
	// EchoAuthorization makes refused credentials (Basic Auth, and the
	// client credentials of POST /tokens/request_token) quote the request's
	// Authorization header in info, as a debugging gateway does.
	EchoAuthorization bool
}

// Project is a generated project.
type Project struct{ ID, Name string }

// PHPEmpty is a way PHP encodes an empty page (see Options.PHPEmpty).
type PHPEmpty string

// The empty shapes TAPD, a PHP service, may send.
const (
	EmptyDataList      PHPEmpty = "data-list"      // "data":[]
	EmptyDataObject    PHPEmpty = "data-object"    // "data":{}
	EmptyRecordsNull   PHPEmpty = "records-null"   // "records":null, label maps []
	EmptyRecordsObject PHPEmpty = "records-object" // "records":{}, label maps []
)

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

	tokens        map[string]time.Time // issued OAuth token → expiry on the fake's clock
	tokenRequests int

	projectStatus map[string]string // SetProjectStatus; "normal" when absent
	nextRequestID uint64
}

// Request is one call the fake answered, for assertions.
type Request struct {
	Path      string
	Query     url.Values
	Status    int
	Fault     string // "" or the injected fault
	RequestID string // the meta.request_id sent
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
	if o.ClientID == "" {
		o.ClientID, o.ClientSecret = "tapd-mirror-app", "app-secret"
	}
	if o.TokenLifetime <= 0 {
		o.TokenLifetime = 7200 * time.Second
	}
	if o.TokenRejectStatus == 0 {
		o.TokenRejectStatus = 422
	}
	if o.HorizonError == "" {
		o.HorizonError = "start_time 只能查最近半年内的数据"
	}
	s := &Server{opts: o, rng: rand.New(rand.NewPCG(o.Seed, o.Seed^0x7a9d)), nextID: 7480000,
		byScope: map[string]*scopeIndex{}, tokens: map[string]time.Time{}, projectStatus: map[string]string{}}
	names := []string{"西门子灌灌灌乐了路虎退货", "支付中台", "Mobile App 📱", "数据平台", "运维"}
	for i := range o.Projects {
		name := names[i%len(names)]
		if i >= len(names) {
			name = fmt.Sprintf("%s %d", name, i/len(names)+1) // distinct names for large companies
		}
		s.projects = append(s.projects, Project{ID: strconv.Itoa(10074561 + i), Name: name})
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
			at := day.Add(time.Duration(s.rng.Int64N(int64(24 * time.Hour))))
			if q := s.opts.CompanyQuietSince; q.IsZero() || at.Before(q) {
				recs = append(recs, newRecord(s.rng, s.opts.CompanyID, "", true, at))
			}
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
	at := len(s.records) - 1
	s.indexLocked(scopeKey(r.Workspace, r.CompanyLevel), at)
	// The company-wide query has its own index so that it is one binary
	// search however many projects the company has.
	if !r.CompanyLevel || (s.opts.CompanyWideIncludesCompanyLevel && r.Workspace == s.opts.CompanyID) {
		s.indexLocked(companyWideKey, at)
	}
	return r
}

// indexLocked inserts record position at into a scope's index, keeping it
// ordered by (created, position): a late record goes in its place, not at
// the end, so every query sees it at once.
func (s *Server) indexLocked(key string, at int) {
	idx := s.byScope[key]
	if idx == nil {
		idx = &scopeIndex{}
		s.byScope[key] = idx
	}
	created := s.records[at].Created
	n := len(idx.rows)
	if n == 0 || !s.records[idx.rows[n-1]].Created.After(created) {
		idx.rows = append(idx.rows, at) // the usual case: newest so far
		return
	}
	// After every record created at the same second: at is the largest position.
	i, _ := slices.BinarySearchFunc(idx.rows, created, func(row int, t time.Time) int {
		if s.records[row].Created.After(t) {
			return 1
		}
		return -1
	})
	idx.rows = slices.Insert(idx.rows, i, at)
}

// scopeIndex lists one scope's records (positions in s.records) ordered by
// creation time, then position (= id), so a window query is two binary
// searches, not a scan.
type scopeIndex struct {
	rows []int
}

// companyWideKey indexes what the company-wide query answers.
const companyWideKey = "all"

func scopeKey(workspace string, companyLevel bool) string {
	if companyLevel {
		return "company:" + workspace
	}
	return workspace
}

// inWindow returns the positions of a scope's records created in [from, to),
// oldest first.
func (s *Server) inWindow(key string, from, to time.Time) []int {
	idx := s.byScope[key]
	if idx == nil {
		return nil
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

// AdvanceTo moves the fake clock forward to t (never back). Clients under
// test wait on the fake's clock with it (tapd.Options.WaitUntil): several
// waiting for the same instant move the clock once.
func (s *Server) AdvanceTo(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := t.Sub(s.nowLocked()); d > 0 {
		s.offset += d
	}
}

// WaitUntil is a tapd.Options.WaitUntil on the fake's clock: it moves the
// clock to t at once, so a test of minutes of quota penalty takes
// milliseconds.
func (s *Server) WaitUntil(ctx context.Context, t time.Time) error {
	s.AdvanceTo(t)
	return ctx.Err()
}

// Horizon is the oldest instant TAPD still answers for: HorizonDays
// calendar days before now, counted in TAPD's zone. A start_time at the
// horizon's minute is still accepted.
func (s *Server) Horizon() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.horizonLocked()
}

func (s *Server) horizonLocked() time.Time {
	return s.nowLocked().In(Shanghai).AddDate(0, 0, -s.opts.HorizonDays)
}

// CompanyID is the generated company's id.
func (s *Server) CompanyID() string { return s.opts.CompanyID }

// Projects are the generated projects.
func (s *Server) Projects() []Project { return slices.Clone(s.projects) }

// Credentials returns the accepted Basic Auth user and password.
func (s *Server) Credentials() (user, password string) { return s.opts.User, s.opts.Password }

// Token returns the accepted personal Bearer token (it never expires).
func (s *Server) Token() string { return s.opts.Token }

// AppCredentials returns the OAuth app's client id and secret.
func (s *Server) AppCredentials() (clientID, clientSecret string) {
	return s.opts.ClientID, s.opts.ClientSecret
}

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

// PlaceNearHorizon adds perProject records to every project, spread evenly
// over [horizon+after, horizon+after+span) by the fake's clock now: dense
// records that expire soon, which a slow first backfill loses.
func (s *Server) PlaceNearHorizon(after, span time.Duration, perProject int) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := s.horizonLocked().Add(after)
	var out []Record
	for _, p := range s.projects {
		for i := range perProject {
			at := from.Add(span * time.Duration(i) / time.Duration(max(perProject, 1)))
			out = append(out, s.appendLocked(newRecord(s.rng, p.ID, p.Name, false, at)))
		}
	}
	return out
}

// AddRecord appends one record in workspace created at the given time,
// after mod (if not nil) has changed it: a chosen title or creator, say
// "a\x00b", which TAPD sends as a\u0000b. mod may change any field but ID,
// which the fake assigns afterwards. When mod sets TitleJSON, Title is
// replaced by what encoding/json decodes TitleJSON to.
func (s *Server) AddRecord(workspace string, at time.Time, mod func(*Record)) Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, companyLevel := s.projectName(workspace)
	r := newRecord(s.rng, workspace, name, companyLevel, at)
	if mod != nil {
		mod(&r)
	}
	if r.TitleJSON != "" {
		var title string
		if err := json.Unmarshal([]byte(`"`+r.TitleJSON+`"`), &title); err != nil {
			panic(fmt.Sprintf("tapdtest: TitleJSON %q is not the inside of a JSON string: %v", r.TitleJSON, err))
		}
		r.Title = title
	}
	return s.appendLocked(r)
}

// RenameProject renames a project, as TAPD shows it from now on in every
// record of that project, old ones included (project_name is read live).
func (s *Server) RenameProject(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.projects {
		if s.projects[i].ID == id {
			s.projects[i].Name = name
		}
	}
	for i := range s.records {
		if s.records[i].Workspace == id && !s.records[i].CompanyLevel {
			s.records[i].ProjectName = name
		}
	}
}

// SetProjectStatus sets a project's status in the projects list: TAPD's
// "normal", "closed" or "suspend". A closed project's logs stay queryable
// (and expire) like any other's.
func (s *Server) SetProjectStatus(id, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.projectStatus[id] = status
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
	rows := s.selectLocked(workspace, companyOnly, s.horizonLocked().Truncate(time.Minute), now.Add(time.Minute), url.Values{})
	out := make([]Record, len(rows))
	for i, at := range rows {
		out[i] = s.records[at]
	}
	return out
}

// selectLocked filters records to [from, to) and the query's filters and
// returns their positions in s.records, newest first (ties: larger id first).
func (s *Server) selectLocked(workspace string, companyOnly bool, from, to time.Time, q url.Values) []int {
	key := workspace // a project
	switch {
	case companyOnly:
		key = scopeKey(workspace, true)
	case workspace == s.opts.CompanyID: // a company id without company_only: all its projects
		key = companyWideKey
	}
	operator, typ, object, ip := q.Get("operator"), q.Get("operate_type"), q.Get("operator_object"), q.Get("ip")
	rows := s.inWindow(key, from, to)
	out := make([]int, 0, len(rows))
	for k := len(rows) - 1; k >= 0; k-- { // the index is oldest first
		r := &s.records[rows[k]]
		if operator != "" && r.Creator != operator || typ != "" && r.TypeKey != typ ||
			object != "" && r.ObjectKey != object || ip != "" && r.IP != ip {
			continue
		}
		out = append(out, rows[k])
	}
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
