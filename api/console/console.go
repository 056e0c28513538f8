// Package console is the compliance console: server-rendered HTML pages
// (html/template, embedded CSS, no JavaScript) for searching the archive,
// reading a record with its provenance, a timeline, sync coverage with the
// admin actions, and exports. It is part of the HTTP layer: package api
// mounts it at / and lends it its token checks, origin check and export.
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/report"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Syncer is what the console needs of the sync engine: the API's interface.
type Syncer interface {
	Trigger(ctx context.Context, workspace string, full bool) (syncer.Triggered, error)
	Status(ctx context.Context) ([]syncer.WorkspaceStatus, error)
	AcknowledgeGaps(ctx context.Context, workspace, note string) ([]storage.Interval, error)
}

// sinceTrigger is a Syncer that can also resync from a date.
type sinceTrigger interface {
	TriggerSince(ctx context.Context, workspace string, since time.Time) (syncer.Triggered, error)
}

// horizoner is a Syncer that knows TAPD's current horizon.
type horizoner interface{ Horizon() time.Time }

// Auth is what the console needs of the API's token checks.
type Auth interface {
	// Open reports that no API token is configured: a loopback install,
	// where browsing needs no sign-in and admin actions are refused.
	Open() bool
	// AdminConfigured reports whether any token has the admin scope.
	AdminConfigured() bool
	// SignIn checks a token exactly as the API checks a bearer token (same
	// throttle, logs and metrics) and returns its name and scope; errors
	// are *AuthError.
	SignIn(r *http.Request, token string) (name string, scope config.Scope, err error)
}

// AuthError is a refused sign-in.
type AuthError struct {
	Status     int
	Message    string
	RetryAfter int // seconds; 0: none
}

func (e *AuthError) Error() string { return e.Message }

// Options configures the console.
type Options struct {
	Store  *storage.Store
	Syncer Syncer // nil: the coverage page says syncing is off
	Auth   Auth
	// Location is the zone of every time shown and typed (config timezone).
	Location *time.Location
	// Export is the API's export handler, without its guard: the console
	// checks access itself and hands it a request carrying API parameters,
	// so both share formats, the formula guard and the concurrency limit.
	Export http.HandlerFunc
	// SameOrigin refuses a request sent by another site's page.
	SameOrigin func(*http.Request) error
	// SessionIdle ends a session unused this long (0: 8h).
	SessionIdle time.Duration
	// CountCap and CountBudget bound the total beside a search page unless
	// it is asked for exactly: it stops at CountCap records (0: 100 000)
	// and is given up after CountBudget (0: 800 ms).
	CountCap    int64
	CountBudget time.Duration
	// Forward reports the forwarding destinations (the /forward page); nil:
	// none are configured.
	Forward func(context.Context) ([]forward.Status, error)
	Logger  *slog.Logger
	Now     func() time.Time
	// Access wraps a page or form so that each request is an entry of the
	// access trail named action (package api's recorder); nil: none. The
	// console fills in the session's token name (storage.AccessOf).
	Access func(action string, h http.HandlerFunc) http.HandlerFunc
	// Report makes the signed completeness report (/report); nil: the page
	// says reports are made with the report command.
	Report report.Maker
}

// Console serves the pages.
type Console struct {
	o        Options
	pages    map[string]*template.Template
	sessions *sessions
	csrf     csrf
	projects projectCache
}

// pageNames are the templates; each is parsed with the layout.
var pageNames = []string{"search", "record", "timeline", "coverage", "forward", "alerts", "report", "access", "signin", "error"}

// New returns a Console; it panics if the embedded templates do not parse
// (a build defect caught by every test).
func New(o Options) *Console {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CountCap <= 0 {
		o.CountCap = defaultCountCap
	}
	if o.CountBudget <= 0 {
		o.CountBudget = defaultCountBudget
	}
	if o.Location == nil {
		o.Location = time.FixedZone("CST", 8*3600) // TAPD's zone when no config says otherwise
	}
	if o.Access == nil {
		o.Access = func(_ string, h http.HandlerFunc) http.HandlerFunc { return h }
	}
	c := &Console{o: o, pages: map[string]*template.Template{}, sessions: newSessions(o.SessionIdle, o.Now),
		csrf: newCSRF()}
	c.projects.store, c.projects.now = o.Store, o.Now
	for _, name := range pageNames {
		c.pages[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS,
			"templates/layout.html", "templates/filters.html", "templates/"+name+".html"))
	}
	return c
}

// Handler routes the console's pages. Package api mounts it at / behind
// its Host check and common headers.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheFor(24*time.Hour, http.FileServerFS(static))))
	rec := c.o.Access
	mux.HandleFunc("GET /{$}", rec("console.search", c.page(needRead, c.search)))
	mux.HandleFunc("GET /record/{id}", rec("console.record", c.page(needRead, c.record)))
	mux.HandleFunc("GET /timeline", rec("console.timeline", c.page(needRead, c.timeline)))
	mux.HandleFunc("GET /coverage", rec("console.coverage", c.page(needRead, c.coverage)))
	mux.HandleFunc("GET /forward", rec("console.forward", c.page(needAuditor, c.forwardStatus)))
	mux.HandleFunc("GET /alerts", rec("console.alerts", c.page(needRead, c.alerts)))
	mux.HandleFunc("GET /export", rec("console.export", c.page(needRead, c.export)))
	// The report summarises the access trail: auditors and admins.
	mux.HandleFunc("GET /report", rec("console.report", c.page(needAuditor, c.report)))
	mux.HandleFunc("GET /access", rec("console.access", c.page(needAuditor, c.access)))
	mux.HandleFunc("GET /signin", c.page(needNothing, c.signinForm))
	mux.HandleFunc("POST /signin", rec("signin", c.form(needNothing, c.signin)))
	mux.HandleFunc("POST /signout", rec("signout", c.form(needNothing, c.signout)))
	mux.HandleFunc("POST /coverage/resync", rec("console.resync", c.form(needAdmin, c.resync)))
	mux.HandleFunc("POST /coverage/ack", rec("console.ack", c.form(needAdmin, c.ack)))
	mux.HandleFunc("/", c.page(needNothing, func(w http.ResponseWriter, r *http.Request, v *view) {
		c.fail(w, r, v, http.StatusNotFound, v.T("e.not_found"))
	}))
	return pageHeaders(mux)
}

// pageHeaders: no script runs on these pages, nothing frames them, and
// evidence is not leaked in a Referer (package api's headers forbid caching
// it, for pages as for the API).
func pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func cacheFor(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(d.Seconds())))
		next.ServeHTTP(w, r)
	})
}

// need is what a console route requires of the visitor.
type need int

const (
	needNothing need = iota
	needRead         // browse: a session of scope read, or an open install
	needAuditor      // the access trail: a session of scope auditor or admin
	needAdmin        // resync and acknowledge: a session of scope admin
)

// view is one request's visitor and page context, shared by every template.
type view struct {
	Lang    string
	Path    string
	Zone    string
	Open    bool // no token configured
	User    string
	Scope   config.Scope
	CSRF    string
	Flash   string
	LangURL map[string]string
	c       *Console
	sid     string // "" when not signed in
	loc     *time.Location
}

// T returns the message key in the page's language.
func (v *view) T(key string, args ...any) string {
	msg, ok := messages[v.Lang][key]
	if !ok {
		msg = messages["en"][key]
	}
	if len(args) > 0 {
		return fmt.Sprintf(msg, args...)
	}
	return msg
}

// Time formats an instant in the configured zone.
func (v *view) Time(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(v.loc).Format("2006-01-02 15:04:05")
}

// Action and Object are TAPD's labels in the page's language; unknown keys
// are shown as stored.
func (v *view) Action(key string) string { return labelOr(ActionLabels[v.Lang], key) }
func (v *view) Object(key string) string { return labelOr(ObjectLabels[v.Lang], key) }

func labelOr(labels map[string]string, key string) string {
	if l, ok := labels[key]; ok {
		return l
	}
	return key
}

// noteVisitor names the session's token in the request's trail entry.
func (v *view) noteVisitor(r *http.Request) {
	if e := storage.AccessOf(r.Context()); e != nil {
		e.Principal = v.User
	}
}

// SignedIn reports a live session.
func (v *view) SignedIn() bool { return v.sid != "" }

// CanRead and CanAdmin say what the visitor may do.
func (v *view) CanRead() bool  { return v.Open || (v.sid != "" && v.Scope.Includes(config.ScopeRead)) }
func (v *view) CanAdmin() bool { return v.sid != "" && v.Scope.Includes(config.ScopeAdmin) }

// CanAudit says the visitor may read the access trail.
func (v *view) CanAudit() bool { return v.sid != "" && v.Scope.Includes(config.ScopeAuditor) }

// AdminHelp explains why admin actions are not offered.
func (v *view) AdminHelp() string {
	switch {
	case !v.c.o.Auth.AdminConfigured():
		return v.T("c.admin_none")
	case !v.SignedIn():
		return v.T("c.admin_signin")
	}
	return v.T("c.admin_needed")
}

type handler func(w http.ResponseWriter, r *http.Request, v *view)

// newView resolves the visitor: language, session, CSRF binding.
func (c *Console) newView(w http.ResponseWriter, r *http.Request) *view {
	lang, setLang := chooseLang(r)
	if setLang && w != nil {
		http.SetCookie(w, cookie(r, langCookie, lang, 365*24*3600))
	}
	v := &view{Lang: lang, Path: r.URL.Path, Zone: c.o.Location.String(), Open: c.o.Auth.Open(), c: c, loc: c.o.Location}
	if ck, err := r.Cookie(sessionCookie); err == nil {
		if sess, ok := c.sessions.get(ck.Value); ok {
			v.sid, v.User, v.Scope = sess.id, sess.name, sess.scope
			v.Flash = c.sessions.takeFlash(sess.id)
		}
	}
	v.CSRF = c.csrf.token(c.binding(w, r, v))
	v.LangURL = map[string]string{}
	for _, l := range languages {
		q := r.URL.Query()
		q.Set("lang", l)
		v.LangURL[l] = r.URL.Path + "?" + q.Encode()
	}
	return v
}

// binding is what this browser's CSRF tokens are bound to: its session,
// or else its csrf cookie (set here on first sight).
func (c *Console) binding(w http.ResponseWriter, r *http.Request, v *view) string {
	if v.sid != "" {
		return "s:" + v.sid
	}
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) == 43 {
		return "p:" + ck.Value
	}
	if w == nil {
		return ""
	}
	val := randomToken()
	http.SetCookie(w, cookie(r, csrfCookie, val, 0))
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: val}) // later lookups in this request see it
	return "p:" + val
}

// allowed checks need; on refusal it answers (sign-in redirect or 403).
func (c *Console) allowed(w http.ResponseWriter, r *http.Request, v *view, n need) bool {
	switch {
	case n == needNothing:
		return true
	case n == needRead && v.CanRead():
		return true
	case n == needAdmin && v.CanAdmin():
		return true
	case n == needAuditor && v.CanAudit():
		return true
	}
	if e := storage.AccessOf(r.Context()); e != nil {
		e.Outcome = storage.AccessDenied // refused, whatever the status
	}
	switch {
	case !v.SignedIn() && !v.Open && r.Method == http.MethodGet:
		http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return false
	case n == needAdmin:
		c.fail(w, r, v, http.StatusForbidden, v.AdminHelp())
		return false
	case n == needAuditor && v.SignedIn():
		c.fail(w, r, v, http.StatusForbidden, v.T("e.need_auditor"))
		return false
	case !v.SignedIn():
		c.fail(w, r, v, http.StatusUnauthorized, v.T("e.need_signin"))
		return false
	}
	c.fail(w, r, v, http.StatusForbidden, v.T("e.need_read"))
	return false
}

// page wraps a GET handler.
func (c *Console) page(n need, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := c.newView(w, r)
		v.noteVisitor(r)
		if c.allowed(w, r, v, n) {
			h(w, r, v)
		}
	}
}

// maxFormBytes bounds a console form post.
const maxFormBytes = 64 << 10

// form wraps a POST handler: same origin, then the CSRF token, then need.
// Console forms are urlencoded HTML forms; the API's JSON-only rule guards
// /api/ mutations, and these are guarded by the token and SameSite cookies.
func (c *Console) form(n need, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := c.newView(nil, r) // a POST sets no cookie before it is accepted
		v.noteVisitor(r)
		if err := c.o.SameOrigin(r); err != nil {
			c.o.Logger.WarnContext(r.Context(), "console: cross-site form refused", "path", r.URL.Path,
				"origin", clip(r.Header.Get("Origin")))
			c.fail(w, r, v, http.StatusForbidden, v.T("e.cross_site"))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			c.fail(w, r, v, http.StatusBadRequest, err.Error())
			return
		}
		if !c.csrf.valid(c.binding(nil, r, v), r.PostForm.Get(csrfField)) {
			c.o.Logger.WarnContext(r.Context(), "console: form without a valid CSRF token refused", "path", r.URL.Path)
			c.fail(w, r, v, http.StatusForbidden, v.T("e.csrf"))
			return
		}
		if c.allowed(w, r, v, n) {
			h(w, r, v)
		}
	}
}

// render executes a page template into a buffer first, so a template error
// becomes a clean 500 instead of half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		c.o.Logger.ErrorContext(r.Context(), "console: rendering page", "page", name, "err", err)
		http.Error(w, "internal error; the server log has the details", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes()) //nolint:errcheck // the client went away
}

type errorPage struct {
	*view
	Status  int
	Message string
}

// fail renders the error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, v *view, status int, msg string) {
	c.render(w, r, status, "error", errorPage{view: v, Status: status, Message: msg})
}

// internal logs err and renders a generic 500.
func (c *Console) internal(w http.ResponseWriter, r *http.Request, v *view, what string, err error) {
	if errors.Is(err, context.Canceled) {
		return // the browser went away
	}
	c.o.Logger.ErrorContext(r.Context(), "console: "+what, "path", r.URL.Path, "err", err)
	c.fail(w, r, v, http.StatusInternalServerError, v.T("e.internal"))
}

// clip shortens client text for logs and messages.
func clip(s string) string {
	if r := []rune(s); len(r) > 100 {
		return string(r[:100]) + "…"
	}
	return s
}

var funcs = template.FuncMap{
	"add": func(a, b int) int { return a + b },
}
