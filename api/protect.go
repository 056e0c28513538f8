package api

import (
	"mime"
	"net"
	"net/http"
	"strings"
)

// Browser-borne attacks: a page the operator visits must not be able to
// change the archive (cross-site requests, text/plain bodies that skip the
// CORS preflight) nor read it through DNS rebinding.

// hostFilter holds the Host names the API answers to.
type hostFilter struct {
	any   bool
	names map[string]bool
}

func newHostFilter(extra []string) hostFilter {
	f := hostFilter{names: map[string]bool{"localhost": true}}
	for _, h := range extra {
		if h == "*" {
			f.any = true
		}
		f.names[normalizeHost(h)] = true
	}
	return f
}

func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
}

// allows reports whether a request's Host (any port) is served. IP literals
// always are: DNS rebinding needs a name the attacker controls, so a request
// that names an address was aimed at this server by whoever typed it.
func (f hostFilter) allows(hostport string) bool {
	if f.any {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = normalizeHost(host)
	return host != "" && (net.ParseIP(host) != nil || f.names[host])
}

// checkHost answers 421 to requests for a Host this server does not serve.
// Health and readiness stay reachable by any name, for probes that send
// the pod or machine address; they carry no data.
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || s.hosts.allows(r.Host) {
			next.ServeHTTP(w, r)
			return
		}
		s.fail(w, r, errorf(http.StatusMisdirectedRequest,
			"this server does not answer to host %q; use localhost, an IP address or a name listed in allowed_hosts (TAPD_MIRROR_ALLOWED_HOSTS) — other names are refused against DNS rebinding",
			clip(r.Host)))
	})
}

// secureHeaders sets the headers every response carries.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// Records, exports, proofs and status are evidence or say something
		// about it: no browser or proxy keeps a copy. The console's static
		// files set their own caching over this.
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// sameOrigin refuses a mutation sent by another site's page: one whose
// Sec-Fetch-Site is not same-origin, or whose Origin is not this Host.
// Clients that are not browsers send neither header and pass.
func (s *Server) sameOrigin(r *http.Request) error {
	if err := s.origins.Check(r); err != nil {
		return errorf(http.StatusForbidden, "cross-site request refused (Origin %q, Sec-Fetch-Site %q): a web page may not change the archive; call the API from a script or a server",
			clip(r.Header.Get("Origin")), clip(r.Header.Get("Sec-Fetch-Site")))
	}
	return nil
}

// requireJSON accepts a mutation's body only as application/json
// (parameters such as charset allowed), so that no HTML form and no
// preflight-free text/plain fetch can reach a handler. A request without a
// body needs no Content-Type.
func requireJSON(r *http.Request) error {
	types := r.Header.Values("Content-Type")
	if len(types) == 0 {
		if r.ContentLength == 0 {
			return nil
		}
		return errorf(http.StatusUnsupportedMediaType, "the request has a body but no Content-Type; send it with 'Content-Type: application/json'")
	}
	mt, _, err := mime.ParseMediaType(types[0])
	if len(types) > 1 || err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, "Content-Type %q is not accepted; send the body as 'Content-Type: application/json'", clip(strings.Join(types, ", ")))
	}
	return nil
}
