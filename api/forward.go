package api

import (
	"context"
	"net/http"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
)

// ForwardStatus reports every forwarding destination (forward.Forwarder.Status).
type ForwardStatus func(context.Context) ([]forward.Status, error)

// adminForward: a destination's status names where the archive is sent and
// its receivers' errors, which is the operators' business (README "Forwarding").
var auditForward = rule{scope: config.ScopeAuditor, what: "forwarding status"}

func (s *Server) forwardRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/forward", s.guard(auditForward, s.forwardStatus))
	mux.HandleFunc("/api/v1/forward", s.methodNotAllowed("GET"))
}

func (s *Server) forwardStatus(w http.ResponseWriter, r *http.Request) {
	if _, err := parseQuery(r); err != nil {
		s.fail(w, r, err)
		return
	}
	out := []forward.Status{}
	if s.forward != nil {
		st, err := s.forward(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out = append(out, st...)
	}
	s.ok(w, map[string]any{"destinations": out})
}
