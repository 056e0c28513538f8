package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// Sessions live in this process's memory: signing out ends one for good,
// and a restart signs everyone out (tokens are read from configuration at
// start, so a revoked token can never outlive a restart in a session).
const (
	sessionCookie = "tapd_mirror_session"
	// csrfCookie binds the CSRF token of a visitor who is not signed in
	// (the sign-in form itself) to this browser.
	csrfCookie = "tapd_mirror_csrf"
	// csrfField is the hidden form field every console form carries.
	csrfField = "csrf"

	defaultSessionIdle = 8 * time.Hour
	sessionMaxAge      = 24 * time.Hour
	maxSessions        = 10000
)

type session struct {
	id            string
	name          string // the token's name, never the token
	scope         config.Scope
	created, seen time.Time
	flash         string // one message for the next page (after a redirect)
}

type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
	idle time.Duration
	now  func() time.Time
}

func newSessions(idle time.Duration, now func() time.Time) *sessions {
	if idle <= 0 {
		idle = defaultSessionIdle
	}
	return &sessions{byID: map[string]*session{}, idle: idle, now: now}
}

// create starts a session for a token that just authenticated.
func (s *sessions) create(name string, scope config.Scope) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.byID) >= maxSessions {
		s.pruneLocked(now)
	}
	if len(s.byID) >= maxSessions { // still full: drop the least recently used
		var oldest *session
		for _, x := range s.byID {
			if oldest == nil || x.seen.Before(oldest.seen) {
				oldest = x
			}
		}
		delete(s.byID, oldest.id)
	}
	sess := &session{id: randomToken(), name: name, scope: scope, created: now, seen: now}
	s.byID[sess.id] = sess
	return sess
}

// get returns the live session id names, renewing its idle timer; a copy,
// so handlers never race with other requests of the same session.
func (s *sessions) get(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byID[id]
	now := s.now()
	if !ok {
		return session{}, false
	}
	if s.expired(sess, now) {
		delete(s.byID, id)
		return session{}, false
	}
	sess.seen = now
	return *sess, true
}

// takeFlash returns and clears the session's one-time message.
func (s *sessions) takeFlash(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.byID[id]; ok {
		f := sess.flash
		sess.flash = ""
		return f
	}
	return ""
}

func (s *sessions) setFlash(id, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.byID[id]; ok {
		sess.flash = msg
	}
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

func (s *sessions) expired(sess *session, now time.Time) bool {
	return now.Sub(sess.seen) > s.idle || now.Sub(sess.created) > sessionMaxAge
}

func (s *sessions) pruneLocked(now time.Time) {
	for id, sess := range s.byID {
		if s.expired(sess, now) {
			delete(s.byID, id)
		}
	}
}

// randomToken is 256 random bits, URL-safe.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand panics rather than return short)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// csrf makes and checks CSRF tokens: an HMAC of what the browser holds (its
// session id, or before sign-in its csrf cookie) under a key that never
// leaves the process. A page of another site can neither read the cookie
// (HttpOnly, SameSite=Strict) nor compute the token.
type csrf struct{ key []byte }

func newCSRF() csrf {
	key := make([]byte, 32)
	rand.Read(key)
	return csrf{key: key}
}

func (c csrf) token(binding string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte("csrf\x00" + binding))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (c csrf) valid(binding, token string) bool {
	return binding != "" && token != "" && hmac.Equal([]byte(c.token(binding)), []byte(token))
}

// secure reports whether the browser reached us over TLS: directly, or
// through a TLS-terminating proxy on this machine that says so with
// X-Forwarded-Proto (the header is trusted only from a loopback peer, so a
// remote client cannot claim it).
func secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if r.Header.Get("X-Forwarded-Proto") != "https" {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// cookie builds a console cookie: HttpOnly, SameSite=Strict, Secure over TLS.
func cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: secure(r)}
}
