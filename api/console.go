package api

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api/console"
	"github.com/tapd-mirror/tapd-mirror/config"
)

// newConsole builds the compliance console on this server's store, syncer,
// token checks, origin check and export handler.
func (s *Server) newConsole(o Options) http.Handler {
	var sy console.Syncer
	if s.syncer != nil {
		sy = s.syncer
	}
	return console.New(console.Options{
		Store:      o.Store,
		Syncer:     sy,
		Auth:       consoleAuth{s},
		Location:   o.Location,
		Export:     s.exportActivities, // the console checks access itself, by session
		Report:     o.Report,
		SameOrigin: s.origins.Check,
		Forward:    s.forward,
		Logger:     s.log,
		Now:        func() time.Time { return s.now() },
		Access:     s.recordAccess,
	}).Handler()
}

// consoleAuth lends the console the API's token checks.
type consoleAuth struct{ s *Server }

func (a consoleAuth) Open() bool            { return len(a.s.auth.tokens) == 0 }
func (a consoleAuth) AdminConfigured() bool { return a.s.auth.anyIncludes(config.ScopeAdmin) }

// SignIn checks a token typed into the console like a bearer token: the
// same per-address throttle, the same logs and metrics.
func (a consoleAuth) SignIn(r *http.Request, token string) (string, config.Scope, error) {
	addr := remoteAddr(r)
	if wait := a.s.auth.failures.blocked(addr); wait > 0 {
		a.s.authFailed(r, "throttled", "")
		return "", "", &console.AuthError{Status: http.StatusTooManyRequests, RetryAfter: retrySeconds(wait),
			Message: fmt.Sprintf("too many failed sign-ins from %s; retry in %d s", addr, retrySeconds(wait))}
	}
	t, ok := a.s.auth.match(strings.TrimSpace(token))
	if !ok || token == "" {
		a.s.auth.failures.fail(addr)
		a.s.authFailed(r, "invalid", "")
		return "", "", &console.AuthError{Status: http.StatusUnauthorized, Message: "the token matches no configured API token"}
	}
	return t.name, t.scope, nil
}
