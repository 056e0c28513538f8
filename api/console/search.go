package console

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// pageSize is how many records a result page shows.
const pageSize = 50

// The total beside a page stops at defaultCountCap records or after
// defaultCountBudget, whichever comes first.
const (
	defaultCountCap    = 100_000
	defaultCountBudget = 800 * time.Millisecond
)

// maxField bounds every typed filter (the API's bound for q).
const maxField = 200

// search is the console's query, all of it in the URL: a search can be
// bookmarked and shared.
type search struct {
	From, To, Project, User, Action, Object, IP, Q string
	after, before                                  *storage.Position
	filter                                         storage.Filter
	Errors                                         []string
}

// searchParams are the URL parameters of a search, in link order.
var searchParams = []string{"from", "to", "project", "user", "action", "object", "ip", "q"}

// parseSearch reads the query string; problems land in Errors, in the
// page's language, and the form keeps what was typed.
func (c *Console) parseSearch(ctx context.Context, r *http.Request, v *view) search {
	q := r.URL.Query()
	s := search{From: q.Get("from"), To: q.Get("to"), Project: q.Get("project"), User: q.Get("user"),
		Action: q.Get("action"), Object: q.Get("object"), IP: q.Get("ip"), Q: q.Get("q")}
	fields := []struct {
		label string
		val   *string
	}{{"f.from", &s.From}, {"f.to", &s.To}, {"f.project", &s.Project}, {"f.user", &s.User},
		{"f.action", &s.Action}, {"f.object", &s.Object}, {"f.ip", &s.IP}, {"f.q", &s.Q}}
	for _, f := range fields {
		*f.val = strings.TrimSpace(*f.val)
		if problem := badText(*f.val); problem != "" {
			s.Errors = append(s.Errors, v.T("e.bad_text", v.T(f.label), problem))
			*f.val = ""
		} else if utf8.RuneCountInString(*f.val) > maxField {
			s.Errors = append(s.Errors, v.T("e.too_long", v.T(f.label), maxField))
			*f.val = ""
		}
	}
	s.filter = storage.Filter{Username: s.User, ActionType: s.Action, Object: s.Object, IP: s.IP, Query: s.Q}
	var err error
	if s.filter.Since, err = parseLocal(s.From, c.o.Location, false); err != nil {
		s.Errors = append(s.Errors, v.T("e.bad_time", v.T("f.from"), clip(s.From)))
	}
	if s.filter.Until, err = parseLocal(s.To, c.o.Location, true); err != nil {
		s.Errors = append(s.Errors, v.T("e.bad_time", v.T("f.to"), clip(s.To)))
	}
	if !s.filter.Since.IsZero() && !s.filter.Until.IsZero() && !s.filter.Since.Before(s.filter.Until) {
		s.Errors = append(s.Errors, v.T("e.bad_range"))
	}
	if s.Project != "" {
		s.filter.Serial = c.projects.serialOf(ctx, s.Project)
	}
	for name, dst := range map[string]**storage.Position{"after": &s.after, "before": &s.before} {
		if raw := q.Get(name); raw != "" {
			if *dst, err = decodeCursor(raw); err != nil {
				s.Errors = append(s.Errors, v.T("e.bad_cursor"))
			}
		}
	}
	return s
}

// values is the search as URL parameters (no paging), empty ones left out.
func (s search) values() url.Values {
	out := url.Values{}
	for i, val := range []string{s.From, s.To, s.Project, s.User, s.Action, s.Object, s.IP, s.Q} {
		if val != "" {
			out.Set(searchParams[i], val)
		}
	}
	return out
}

// link is path with the search and extra parameters (name, value pairs).
func (s search) link(path string, extra ...string) string {
	q := s.values()
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// apiParams is the search as the API's filter parameters (export).
func (s search) apiParams() url.Values {
	f := s.filter
	out := url.Values{}
	for name, val := range map[string]string{"serial": f.Serial, "username": f.Username, "action_type": f.ActionType,
		"object": f.Object, "ip": f.IP, "q": f.Query} {
		if val != "" {
			out.Set(name, val)
		}
	}
	if !f.Since.IsZero() {
		out.Set("since", strconv.FormatInt(f.Since.Unix(), 10))
	}
	if !f.Until.IsZero() {
		out.Set("until", strconv.FormatInt(f.Until.Unix(), 10))
	}
	return out
}

// Times typed in the form, read in the configured zone.
var localLayouts = []string{"2006-01-02", "2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02T15:04:05"}

// parseLocal reads a typed time in loc; "" is the zero time. A bare date
// as an end (to) means the whole day: the next midnight.
func parseLocal(s string, loc *time.Location, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for i, layout := range localLayouts {
		t, err := time.ParseInLocation(layout, s, loc)
		if err != nil {
			continue
		}
		if i == 0 && end {
			t = t.AddDate(0, 0, 1)
		}
		if t.Year() < 1970 || t.Year() > 9999 {
			break
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("not a time: %q", s)
}

// badText says what is wrong with typed text ("" when nothing): the API's
// rule, no control characters and valid UTF-8.
func badText(s string) string {
	if !utf8.ValidString(s) {
		return "invalid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("control character %U", r)
		}
	}
	return ""
}

// Cursors are base64url of "v1:<unix seconds>:<id>", like the API's.
func encodeCursor(a storage.Activity) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "v1:%d:%d", a.Timestamp.Unix(), a.ID))
}

func decodeCursor(raw string) (*storage.Position, error) {
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(string(b), ":")
	if len(parts) != 3 || parts[0] != "v1" {
		return nil, errors.New("not v1:SECONDS:ID")
	}
	sec, err1 := strconv.ParseInt(parts[1], 10, 64)
	id, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || id <= 0 || sec < 1 || sec > 253402300799 {
		return nil, errors.New("cursor out of range")
	}
	return &storage.Position{Timestamp: time.Unix(sec, 0).UTC(), ID: id}, nil
}

// option is one <option> of a select.
type option struct {
	Value, Label string
	Selected     bool
}

// filterForm is what the shared filter form needs.
type filterForm struct {
	S          search
	FormAction string // the form's target
	Projects   []storage.Project
	ActionOpts []option
	ObjectOpts []option
}

func (c *Console) filterForm(ctx context.Context, v *view, s search, action string) filterForm {
	ff := filterForm{S: s, FormAction: action}
	ff.Projects, _ = c.projects.list(ctx) // a missing pick list is no reason to fail the page
	opts := func(keys []string, chosen string, label func(string) string) []option {
		out := []option{{Value: "", Label: v.T("f.any"), Selected: chosen == ""}}
		for _, k := range keys {
			out = append(out, option{Value: k, Label: label(k), Selected: k == chosen})
		}
		if chosen != "" && !slices.Contains(keys, chosen) { // a value from a link, e.g. a local action type
			out = append(out, option{Value: chosen, Label: chosen, Selected: true})
		}
		return out
	}
	ff.ActionOpts = opts(ActionKeys, s.Action, v.Action)
	ff.ObjectOpts = opts(ObjectKeys, s.Object, v.Object)
	return ff
}

// row is one result line.
type row struct {
	ID                                    int64
	Time, User, Action, Object, Title, IP string
	Project, Serial                       string
	URL                                   string
}

func (v *view) row(a storage.Activity, back string) row {
	extra := a.ExtraFields()
	title := extra["title"]
	if title == "" {
		title = a.ActionDetail
	}
	object := extra["operate_object"]
	if k := extra["operate_object_key"]; k != "" {
		object = v.Object(k)
	}
	u := fmt.Sprintf("/record/%d", a.ID)
	if back != "" {
		u += "?" + url.Values{"back": {back}}.Encode()
	}
	return row{ID: a.ID, Time: v.Time(a.Timestamp), User: a.Username, Action: v.Action(a.ActionType), Object: object,
		Title: title, IP: extra["ip"], Project: extra["project_name"], Serial: a.Serial, URL: u}
}

type searchPage struct {
	*view
	filterForm
	Rows                       []row
	Count                      string
	Searched                   bool
	NewerURL, OlderURL, Newest string
	ExactURL                   string // set when Count is a lower bound
	CSV, NDJSON, Bundle, Chart string
}

// search is the landing page: the form, the total, one page of results.
func (c *Console) search(w http.ResponseWriter, r *http.Request, v *view) {
	ctx := r.Context()
	s := c.parseSearch(ctx, r, v)
	p := searchPage{view: v, filterForm: c.filterForm(ctx, v, s, "/")}
	if len(s.Errors) > 0 {
		c.render(w, r, http.StatusBadRequest, "search", p)
		return
	}
	// The total and the page are independent questions: ask them at once.
	// The total stops at CountCap unless asked for exactly (?count=exact):
	// a broad text search can match millions, and the page must not wait.
	// Nor does it wait longer than CountBudget for it: counting the rows a
	// mid-frequency substring matches reads much of the table.
	exact := r.URL.Query().Get("count") == "exact"
	var count int64
	var countErr error
	whole := exact // the count is the whole count, not a lower bound
	var wg sync.WaitGroup
	wg.Add(1)
	countCtx, cancelCount := context.WithTimeout(ctx, c.o.CountBudget)
	defer cancelCount()
	go func() {
		defer wg.Done()
		if exact {
			count, countErr = c.o.Store.CountActivities(ctx, s.filter)
		} else {
			count, whole, countErr = c.o.Store.CountActivitiesUpTo(countCtx, s.filter, c.o.CountCap)
		}
	}()
	rows, newer, older, err := c.resultPage(ctx, s)
	noteAccess(r, int64(len(rows)))
	wg.Wait()
	slow := countErr != nil && !exact && errors.Is(countCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	if err == nil && !slow {
		err = countErr
	}
	if err != nil {
		c.internal(w, r, v, "searching", err)
		return
	}
	p.Searched = true
	p.Count = v.T("r.count", thousands(count))
	switch {
	case slow:
		p.Count = v.T("r.count_slow", c.o.CountBudget)
		p.ExactURL = s.link("/", "count", "exact")
	case !whole:
		p.Count = v.T("r.count_more", thousands(c.o.CountCap))
		p.ExactURL = s.link("/", "count", "exact")
	}
	here := r.URL.Query()
	here.Del("lang")
	back := here.Encode()
	for _, a := range rows {
		p.Rows = append(p.Rows, v.row(a, back))
	}
	if newer && len(rows) > 0 {
		p.NewerURL = s.link("/", "before", encodeCursor(rows[0]))
		p.Newest = s.link("/")
	}
	if older && len(rows) > 0 {
		p.OlderURL = s.link("/", "after", encodeCursor(rows[len(rows)-1]))
	}
	p.CSV, p.NDJSON, p.Bundle = s.link("/export", "format", "csv"), s.link("/export", "format", "ndjson"), s.link("/export", "format", "bundle")
	p.Chart = s.link("/timeline")
	c.render(w, r, http.StatusOK, "search", p)
}

// resultPage reads one page of results, newest first, and whether newer and
// older rows exist beyond it. It reads one row more than it shows to know.
func (c *Console) resultPage(ctx context.Context, s search) (rows []storage.Activity, newer, older bool, err error) {
	st := c.o.Store
	f := s.filter
	if s.before != nil {
		f.Before = s.before
		if rows, err = st.ListActivitiesBefore(ctx, f, pageSize+1); err != nil {
			return nil, false, false, err
		}
		if len(rows) > pageSize {
			return rows[1:], true, true, nil
		}
		f.Before = nil // back at the top: show the newest page, full
	} else if s.after != nil {
		f.After = s.after
		newer = true
	}
	if rows, err = st.ListActivities(ctx, f, pageSize+1, 0); err != nil {
		return nil, false, false, err
	}
	if len(rows) > pageSize {
		return rows[:pageSize], newer, true, nil
	}
	return rows, newer, false, nil
}

// thousands writes n with thousands separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

type recordPage struct {
	*view
	A       storage.Activity
	Extra   [][2]string
	Title   string
	Object  string
	BackURL string
	Proof   proofView
}

// record shows one record: every field, the raw TAPD fields, provenance.
func (c *Console) record(w http.ResponseWriter, r *http.Request, v *view) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		c.fail(w, r, v, http.StatusNotFound, v.T("e.not_found"))
		return
	}
	a, err := c.o.Store.GetActivity(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		c.fail(w, r, v, http.StatusNotFound, v.T("e.record_not_found", id))
		return
	}
	if err != nil {
		c.internal(w, r, v, "reading a record", err)
		return
	}
	noteAccess(r, 1)
	p := recordPage{view: v, A: a, BackURL: "/"}
	extra := a.ExtraFields()
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		p.Extra = append(p.Extra, [2]string{k, extra[k]})
	}
	p.Object = extra["operate_object"]
	if k := extra["operate_object_key"]; k != "" {
		p.Object = v.Object(k)
	}
	if back, err := url.ParseQuery(r.URL.Query().Get("back")); err == nil && len(back) > 0 {
		p.BackURL = "/?" + back.Encode() // re-encoded: it can only ever be a search
	}
	if p.Proof, err = c.proof(r.Context(), v, id); err != nil {
		c.internal(w, r, v, "proving a record", err)
		return
	}
	c.render(w, r, http.StatusOK, "record", p)
}

// projectCache keeps the project pick list for a while: it changes when
// TAPD gains a project, not per request.
type projectCache struct {
	store *storage.Store
	now   func() time.Time
	mu    sync.Mutex
	items []storage.Project
	at    time.Time
}

const projectCacheTTL = 5 * time.Minute

func (p *projectCache) list(ctx context.Context) ([]storage.Project, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.items != nil && p.now().Sub(p.at) < projectCacheTTL {
		return p.items, nil
	}
	items, err := p.store.Projects(ctx)
	if err != nil {
		return nil, err
	}
	p.items, p.at = items, p.now()
	return items, nil
}

// serialOf resolves what was typed as a project: a serial as is, else a
// project name (case-insensitive); an unknown name is kept as a serial, so
// it matches nothing rather than everything.
func (p *projectCache) serialOf(ctx context.Context, typed string) string {
	items, _ := p.list(ctx)
	for _, it := range items {
		if it.Serial == typed {
			return typed
		}
	}
	for _, it := range items {
		if it.Name != "" && strings.EqualFold(it.Name, typed) {
			return it.Serial
		}
	}
	return typed
}
