// Package api serves the local Activity Log API contract, plus the additive
// extensions documented in README.md. It knows storage and the syncer's
// trigger interface, never TAPD.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/report"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// MaxBodyBytes bounds request bodies; larger ones get 413.
const MaxBodyBytes = 1 << 20

// DefaultMaxExports is how many exports may run at once unless Options say.
const DefaultMaxExports = 2

// Server holds what the handlers need.
type Server struct {
	store     *storage.Store
	syncer    Syncer
	metrics   *Metrics
	ready     func(context.Context) error
	auth      *authenticator
	plainRead rule // the contract's list and count
	hosts     hostFilter
	origins   *http.CrossOriginProtection
	exports   chan struct{} // one slot per export allowed to run
	// exportStall: an export whose client takes nothing for this long is dropped.
	exportStall time.Duration
	integrity   Integrity
	forward     ForwardStatus
	fwdReplay   ForwardReplay
	console     http.Handler // the compliance console, at /
	trail       *trailWriter // the access trail's writer (access.go)
	log         *slog.Logger
	now         func() time.Time
}

// Options configures a Server.
type Options struct {
	Store   *storage.Store
	Syncer  Syncer   // nil: the sync endpoints answer 503
	Metrics *Metrics // nil: no /metrics, no request metrics
	// Ready reports why the process cannot serve yet (GET /readyz); nil: store.Ready.
	Ready func(context.Context) error
	// Tokens are the API's bearer tokens. With none, the contract's requests
	// and the read extensions are open (a loopback install) and the admin
	// endpoints are refused; see README "Security".
	Tokens []config.Token
	// RequireReadToken closes the contract's plain list and count too.
	RequireReadToken bool
	// AllowedHosts are Host names served besides localhost and IP
	// addresses, any port; "*" serves any Host.
	AllowedHosts []string
	// MaxExports bounds concurrent exports (0: DefaultMaxExports); the store's
	// export pool is sized to match.
	MaxExports int
	// ExportStall is how long an export may go without its client taking
	// data before it is dropped (default 1m); while data flows an export has
	// no time limit.
	ExportStall time.Duration
	// Location is the zone the console shows and reads times in
	// (config timezone); nil: TAPD's, UTC+8.
	Location *time.Location
	Logger   *slog.Logger
	// Integrity: the log's key and verification status (see integrity.go).
	Integrity Integrity
	// Forward reports the forwarding destinations (GET /api/v1/forward);
	// nil: none are configured.
	Forward ForwardStatus
	// ForwardReplay serves POST /api/v1/forward/{name}/replay; nil: none are configured.
	ForwardReplay ForwardReplay
	// RecordContractReads puts the contract's plain list and count in the
	// access trail too (access_log.contract_reads: all).
	RecordContractReads bool
	// WithoutAccessTrail records nothing: for the benchmark's same-run
	// baseline only (README "For auditors" says every access is recorded).
	WithoutAccessTrail bool
	// Report makes the completeness report (console /report); nil: the
	// console says reports are made with the report command.
	Report report.Maker
}

// New returns a Server.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Ready == nil {
		o.Ready = o.Store.Ready
	}
	if o.MaxExports <= 0 {
		o.MaxExports = DefaultMaxExports
	}
	if o.ExportStall <= 0 {
		o.ExportStall = time.Minute
	}
	o.Store.SetExportConns(o.MaxExports)
	s := &Server{store: o.Store, syncer: o.Syncer, metrics: o.Metrics, ready: o.Ready,
		auth: newAuthenticator(o.Tokens), hosts: newHostFilter(o.AllowedHosts),
		origins: http.NewCrossOriginProtection(), exports: make(chan struct{}, o.MaxExports),
		exportStall: o.ExportStall, integrity: o.Integrity, forward: o.Forward, fwdReplay: o.ForwardReplay, log: o.Logger, now: time.Now,
		trail: newTrailWriter(o.Store, o.Logger, o.RecordContractReads, o.WithoutAccessTrail)}
	if o.RequireReadToken {
		s.plainRead = rule{scope: config.ScopeRead, open: true, what: "reading activity logs (auth.require_read_token)"}
	}
	s.console = s.newConsole(o)
	return s
}

// What each endpoint needs; see README "Security" for the table.
var (
	writeLocal = rule{scope: config.ScopeWrite, open: true, what: "changing activity logs"}
	readDetail = rule{scope: config.ScopeRead, open: true, what: "detail=1 (IPs, user agents, URLs)"}
	readExport = rule{scope: config.ScopeRead, open: true, what: "export"}
	// A full bundle holds every event: holds' names and reasons and the
	// access trail, which the read scope does not see (GET /api/v1/access).
	fullBundle = rule{scope: config.ScopeAuditor, what: "a bundle of the whole log (holds, the access trail; filter it to export records only)"}
	adminSync  = rule{scope: config.ScopeAdmin, what: "sync administration"}
	auditSync  = rule{scope: config.ScopeAuditor, what: "sync status and runs"}
	deleteAll  = rule{scope: config.ScopeAdmin, what: "deleting all activity logs"}
	deleteTAPD = rule{scope: config.ScopeAdmin, what: "deleting a mirrored TAPD record (evidence)"}
)

// Handler returns the routed HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/activity_log", s.guard(writeLocal, s.createActivity))
	mux.HandleFunc("GET /api/v1/activity_log", s.guard(s.plainRead, s.listActivities))
	mux.HandleFunc("GET /api/v1/activity_log/count", s.guard(s.plainRead, s.countActivities))
	mux.HandleFunc("GET /api/v1/activity_log/export", s.guard(readExport, s.exportFromAPI))
	// The literal "all" is more specific than {id}, so it is never parsed as an id.
	mux.HandleFunc("DELETE /api/v1/activity_log/all", s.guard(deleteAll, s.deleteAllActivities))
	// Deleting a mirrored record needs more; deleteActivity checks deleteTAPD.
	mux.HandleFunc("DELETE /api/v1/activity_log/{id}", s.guard(writeLocal, s.deleteActivity))

	mux.HandleFunc("POST /api/v1/sync", s.guard(adminSync, s.needSyncer(s.triggerSync)))
	mux.HandleFunc("GET /api/v1/sync/status", s.guard(auditSync, s.needSyncer(s.syncStatus)))
	mux.HandleFunc("POST /api/v1/sync/gaps/ack", s.guard(adminSync, s.needSyncer(s.ackGaps)))
	mux.HandleFunc("GET /api/v1/sync/runs", s.guard(auditSync, s.listRuns))
	mux.HandleFunc("GET /api/v1/sync/runs/{id}", s.guard(auditSync, s.getRun))
	mux.HandleFunc("GET /api/v1/access", s.guard(readAccess, s.listAccess))
	mux.HandleFunc("/api/v1/access", s.methodNotAllowed("GET"))
	s.integrityRoutes(mux)
	s.forwardRoutes(mux)
	s.alertRoutes(mux)

	// Known paths with another method: a JSON 405 instead of the mux's plain text.
	mux.HandleFunc("/api/v1/activity_log", s.methodNotAllowed("GET, POST"))
	mux.HandleFunc("/api/v1/activity_log/{rest...}", func(w http.ResponseWriter, r *http.Request) {
		switch rest := r.PathValue("rest"); {
		case rest == "count" || rest == "export":
			s.methodNotAllowed("GET")(w, r)
		case rest != "" && !strings.Contains(rest, "/"):
			s.methodNotAllowed("DELETE")(w, r)
		default:
			s.notFound(w, r)
		}
	})
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	var h http.Handler = s.checkHost(mux)
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics.Handler())
		h = s.metrics.instrument(h)
	}
	mux.HandleFunc("/api/", s.notFound)
	mux.Handle("/", s.console) // pages, behind the same Host check and headers
	return s.recoverPanics(secureHeaders(h))
}

// healthz says the process is alive; it touches nothing.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	s.ok(w, map[string]string{"status": "ok"})
}

// readyz says whether the database is reachable and migrated and the
// scheduler runs; the reason is generic so nothing internal leaks.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.ready(ctx); err != nil {
		s.log.WarnContext(ctx, "not ready", "err", err)
		s.fail(w, r, errorf(http.StatusServiceUnavailable, "not ready: %s", readinessReason(err)))
		return
	}
	s.ok(w, map[string]string{"status": "ready"})
}

// readinessReason keeps only the first clause of a readiness error.
func readinessReason(err error) string {
	msg, _, _ := strings.Cut(err.Error(), ":")
	return msg
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, errorf(http.StatusNotFound, "no such endpoint: %s %s", clip(r.Method), clip(r.URL.Path)))
}

func (s *Server) needSyncer(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.syncer == nil {
			s.fail(w, r, errorf(http.StatusServiceUnavailable, "syncing is not running in this process"))
			return
		}
		next(w, r)
	}
}

func (s *Server) methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		s.fail(w, r, errorf(http.StatusMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", clip(r.Method), clip(r.URL.Path), allow))
	}
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "handler panic", slog.Any("panic", v), slog.String("path", r.URL.Path))
				s.fail(w, r, errorf(http.StatusInternalServerError, "internal error; the server log has the details"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
