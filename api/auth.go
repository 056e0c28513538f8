package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// rule is what a request needs to be allowed.
type rule struct {
	// scope is needed whenever any token is configured ("" = none).
	scope config.Scope
	// open: with no token configured at all (a loopback install), the
	// request is allowed without one. Otherwise it is refused until a token
	// of scope is configured.
	open bool
	// what names the action in error messages.
	what string
}

// identity is who a request authenticated as; the zero value is anonymous.
type identity struct {
	name  string
	scope config.Scope
}

type identityKey struct{}

// TokenName returns the name of the API token the request authenticated
// with, or "" when it sent none.
func TokenName(ctx context.Context) string {
	id, _ := ctx.Value(identityKey{}).(identity)
	return id.name
}

// tokenName is TokenName for logs.
func tokenName(ctx context.Context) string {
	if n := TokenName(ctx); n != "" {
		return n
	}
	return "(none)"
}

// Failed authentications per remote address: a burst, then one per interval.
const (
	authFailureBurst    = 10
	authFailureInterval = 10 * time.Second
	maxTrackedAddresses = 10000
)

// authenticator checks bearer tokens. Tokens are kept and compared as
// SHA-256 digests in constant time, so neither their length nor a matching
// prefix shows in the time a comparison takes.
type authenticator struct {
	tokens   []storedToken
	failures failureThrottle
}

type storedToken struct {
	name   string
	scope  config.Scope
	digest [sha256.Size]byte
}

func newAuthenticator(tokens []config.Token) *authenticator {
	a := &authenticator{failures: failureThrottle{by: map[string]*rate.Limiter{}}}
	for _, t := range tokens {
		a.tokens = append(a.tokens, storedToken{name: t.Name, scope: t.Scope, digest: sha256.Sum256([]byte(t.Token))})
	}
	return a
}

// anyIncludes reports whether some configured token may do what needs scope.
func (a *authenticator) anyIncludes(scope config.Scope) bool {
	for _, t := range a.tokens {
		if t.scope.Includes(scope) {
			return true
		}
	}
	return false
}

// match returns the token whose digest equals token's; it looks at every
// configured token whatever matches.
func (a *authenticator) match(token string) (storedToken, bool) {
	sum := sha256.Sum256([]byte(token))
	var found storedToken
	ok := false
	for _, t := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.digest[:]) == 1 {
			found, ok = t, true
		}
	}
	return found, ok
}

// identify reads the Authorization header. No header is anonymous; a header
// that names no configured token is an error, on every route.
func (s *Server) identify(r *http.Request) (identity, error) {
	headers := r.Header.Values("Authorization")
	switch {
	case len(headers) == 0:
		return identity{}, nil
	case len(headers) > 1:
		return identity{}, errorf(http.StatusBadRequest, "send one Authorization header, not %d", len(headers))
	}
	addr := remoteAddr(r)
	if wait := s.auth.failures.blocked(addr); wait > 0 {
		s.authFailed(r, "throttled", "")
		return identity{}, &Error{Status: http.StatusTooManyRequests,
			Message: fmt.Sprintf("too many failed authentications from %s; retry in %d s", addr, retrySeconds(wait)),
			Header:  http.Header{"Retry-After": {strconv.Itoa(retrySeconds(wait))}}}
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(headers[0]), " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		s.auth.failures.fail(addr)
		s.authFailed(r, "malformed", "")
		return identity{}, unauthorized("the Authorization header must be 'Bearer <token>'")
	}
	t, ok := s.auth.match(token)
	if !ok {
		s.auth.failures.fail(addr)
		s.authFailed(r, "invalid", "")
		return identity{}, unauthorized("the bearer token matches no configured token")
	}
	return identity{name: t.name, scope: t.scope}, nil
}

// permit decides whether the request's identity may do what rule needs.
func (s *Server) permit(r *http.Request, need rule) error {
	if need.scope == "" || (need.open && len(s.auth.tokens) == 0) {
		return nil
	}
	if !s.auth.anyIncludes(need.scope) {
		return errorf(http.StatusForbidden, "%s needs a token of scope %s, and none is configured; set %s (or add a token of scope %s to auth.tokens) and send it as 'Authorization: Bearer <token>'",
			need.what, scopeText(need.scope), tokenEnv(need.scope), need.scope)
	}
	id, _ := r.Context().Value(identityKey{}).(identity)
	if id.name == "" {
		s.authFailed(r, "missing", "")
		return unauthorized(fmt.Sprintf("%s needs a token of scope %s; send 'Authorization: Bearer <token>'", need.what, scopeText(need.scope)))
	}
	if !id.scope.Includes(need.scope) {
		s.authFailed(r, "scope", id.name)
		return errorf(http.StatusForbidden, "%s needs a token of scope %s; token %q has scope %s", need.what, scopeText(need.scope), id.name, id.scope)
	}
	return nil
}

// scopeText names what a token needs: auditor is not on one line with
// write, so its messages name admin too (the one scope above it).
func scopeText(scope config.Scope) string {
	if scope == config.ScopeAuditor {
		return "auditor or admin"
	}
	return string(scope)
}

// tokenEnv is the env var that configures a token of scope.
func tokenEnv(scope config.Scope) string {
	switch scope {
	case config.ScopeRead:
		return "TAPD_MIRROR_READ_TOKEN"
	case config.ScopeWrite:
		return "TAPD_MIRROR_WRITE_TOKEN"
	case config.ScopeAuditor:
		return "TAPD_MIRROR_AUDITOR_TOKEN or TAPD_MIRROR_ADMIN_TOKEN"
	}
	return "TAPD_MIRROR_ADMIN_TOKEN"
}

func unauthorized(msg string) *Error {
	return &Error{Status: http.StatusUnauthorized, Message: msg,
		Header: http.Header{"Www-Authenticate": {`Bearer realm="tapd-mirror"`}}}
}

// authFailed logs and counts a failed authentication: never the token,
// only the name of a token that matched but lacked the scope. Requests
// refused while throttled are logged at debug level only, so a guessing
// client cannot flood the log (it gets one warning per permitted attempt).
func (s *Server) authFailed(r *http.Request, reason, token string) {
	attrs := []slog.Attr{slog.String("route", r.Pattern), slog.String("remote", remoteAddr(r)), slog.String("reason", reason)}
	if token != "" {
		attrs = append(attrs, slog.String("token", token))
	}
	level := slog.LevelWarn
	if reason == "throttled" {
		level = slog.LevelDebug
	}
	s.log.LogAttrs(r.Context(), level, "authentication failed", attrs...)
	s.metrics.authFailure(reason)
}

// remoteAddr is the client's IP address, without the port.
func remoteAddr(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

func retrySeconds(d time.Duration) int { return max(1, int(math.Ceil(d.Seconds()))) }

// failureThrottle limits failed authentications per remote address.
type failureThrottle struct {
	mu sync.Mutex
	by map[string]*rate.Limiter
}

// blocked returns how long addr must wait before its next attempt; 0: it may try.
func (f *failureThrottle) blocked(addr string) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	lim := f.by[addr]
	if lim == nil || lim.Tokens() >= 1 {
		return 0
	}
	return time.Duration((1 - lim.Tokens()) * float64(authFailureInterval))
}

// fail spends one of addr's failures.
func (f *failureThrottle) fail(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lim := f.by[addr]
	if lim == nil {
		if len(f.by) >= maxTrackedAddresses {
			f.prune()
		}
		lim = rate.NewLimiter(rate.Every(authFailureInterval), authFailureBurst)
		f.by[addr] = lim
	}
	lim.Allow()
}

// prune forgets addresses that have their whole burst back; if that is not
// enough (failures from very many addresses), it forgets them all rather
// than grow without bound.
func (f *failureThrottle) prune() {
	for addr, lim := range f.by {
		if lim.Tokens() >= authFailureBurst {
			delete(f.by, addr)
		}
	}
	if len(f.by) >= maxTrackedAddresses {
		clear(f.by)
	}
}

// guard applies the browser protections to mutations, identifies the
// caller, and lets the request through only if need is met. The identity
// travels in the request context (TokenName).
func (s *Server) guard(need rule, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if act, ok := accessActions[r.Pattern]; ok {
			var n *accessNote
			r, n = s.beginAccess(r, act.name, !act.contract)
			sw := &statusWriter{ResponseWriter: w}
			defer func() { s.finishAccess(r, n, sw.code()) }()
			w = sw
		}
		if isMutation(r.Method) {
			if err := s.sameOrigin(r); err != nil {
				s.fail(w, r, err)
				return
			}
			if err := requireJSON(r); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		id, err := s.identify(r)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.Status == http.StatusTooManyRequests {
				noteAction(r.Context(), "") // throttled: counted, not recorded, so guessing cannot flood the trail
			} else {
				noteAction(r.Context(), actionOf(r)) // a failed authentication always goes to the trail
			}
			s.fail(w, r, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
		notePrincipal(r.Context(), id.name)
		if err := s.permit(r, need); err != nil {
			noteAction(r.Context(), actionOf(r))
			s.fail(w, r, err)
			return
		}
		next(w, r)
	}
}

// actionOf is the action r's note has so far.
func actionOf(r *http.Request) string {
	if n := noteOf(r.Context()); n != nil {
		return n.entry.Action
	}
	return ""
}

func isMutation(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}
