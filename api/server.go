// Package api serves the local Activity Log API contract, plus the additive
// extensions documented in README.md. It knows storage and the syncer's
// trigger interface, never TAPD.
package api

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// MaxBodyBytes bounds request bodies; larger ones get 413.
const MaxBodyBytes = 1 << 20

// Server holds what the handlers need.
type Server struct {
	store      *storage.Store
	syncer     Syncer
	metrics    *Metrics
	ready      func(context.Context) error
	adminToken string
	log        *slog.Logger
	now        func() time.Time
}

// Options configures a Server.
type Options struct {
	Store   *storage.Store
	Syncer  Syncer   // nil: the sync endpoints answer 503
	Metrics *Metrics // nil: no /metrics, no request metrics
	// Ready reports why the process cannot serve yet (GET /readyz); nil: store.Ready.
	Ready      func(context.Context) error
	AdminToken string // empty: mutations are open, DELETE …/all is refused
	Logger     *slog.Logger
}

// New returns a Server.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Ready == nil {
		o.Ready = o.Store.Ready
	}
	return &Server{store: o.Store, syncer: o.Syncer, metrics: o.Metrics, ready: o.Ready,
		adminToken: o.AdminToken, log: o.Logger, now: time.Now}
}

// Handler returns the routed HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/activity_log", s.admin(false, s.createActivity))
	mux.HandleFunc("GET /api/v1/activity_log", s.listActivities)
	mux.HandleFunc("GET /api/v1/activity_log/count", s.countActivities)
	mux.HandleFunc("GET /api/v1/activity_log/export", s.admin(false, s.exportActivities))
	// The literal "all" is more specific than {id}, so it is never parsed as an id.
	mux.HandleFunc("DELETE /api/v1/activity_log/all", s.admin(true, s.deleteAllActivities))
	mux.HandleFunc("DELETE /api/v1/activity_log/{id}", s.admin(false, s.deleteActivity))

	mux.HandleFunc("POST /api/v1/sync", s.admin(true, s.needSyncer(s.triggerSync)))
	mux.HandleFunc("GET /api/v1/sync/status", s.admin(true, s.needSyncer(s.syncStatus)))
	mux.HandleFunc("POST /api/v1/sync/gaps/ack", s.admin(true, s.needSyncer(s.ackGaps)))
	mux.HandleFunc("GET /api/v1/sync/runs", s.admin(true, s.listRuns))
	mux.HandleFunc("GET /api/v1/sync/runs/{id}", s.admin(true, s.getRun))

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
	var h http.Handler = mux
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics.Handler())
		h = s.metrics.instrument(mux)
	}
	mux.HandleFunc("/", s.notFound)
	return s.recoverPanics(h)
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
	s.fail(w, r, errorf(http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
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
		s.fail(w, r, errorf(http.StatusMethodNotAllowed, "method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
	}
}

// admin guards a mutating endpoint with the bearer admin token. When no token
// is configured, ordinary mutations are open (loopback-only deployments) but
// always=true endpoints are refused outright.
func (s *Server) admin(always bool, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.adminToken == "" {
			if always {
				s.fail(w, r, errorf(http.StatusForbidden, "this endpoint is disabled because no admin token is configured; set admin_token (TAPD_MIRROR_ADMIN_TOKEN) and send it as 'Authorization: Bearer <token>'"))
				return
			}
			next(w, r)
			return
		}
		got, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !found || subtle.ConstantTimeCompare([]byte(got), []byte(s.adminToken)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tapd-mirror"`)
			s.fail(w, r, errorf(http.StatusUnauthorized, "missing or wrong admin token; send 'Authorization: Bearer <admin_token>'"))
			return
		}
		next(w, r)
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
