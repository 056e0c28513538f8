package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
)

// ForwardStatus reports every forwarding destination (forward.Forwarder.Status).
type ForwardStatus func(context.Context) ([]forward.Status, error)

// ForwardReplay moves a destination's cursor back (forward.ReplayFrom):
// from ≥ 0, or from < 0 and since.
type ForwardReplay func(ctx context.Context, name string, from int64, since time.Time) (forward.Replay, error)

// auditForward: a destination's status names where the archive is sent and
// its receivers' errors, which is for operators and auditors (README
// "Forwarding"); a replay resends the archive, for admins only.
var (
	auditForward = rule{scope: config.ScopeAuditor, what: "forwarding status"}
	adminForward = rule{scope: config.ScopeAdmin, what: "forwarding replay"}
)

func (s *Server) forwardRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/forward", s.guard(auditForward, s.forwardStatus))
	mux.HandleFunc("/api/v1/forward", s.methodNotAllowed("GET"))
	mux.HandleFunc("POST /api/v1/forward/{name}/replay", s.guard(adminForward, s.forwardReplay))
	mux.HandleFunc("/api/v1/forward/{name}/replay", s.methodNotAllowed("POST"))
}

// forwardReplay: POST /api/v1/forward/{name}/replay?from=INDEX (or
// ?since=RFC3339|unix seconds).
func (s *Server) forwardReplay(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q := r.URL.Query()
	for k := range q {
		if k != "from" && k != "since" {
			s.fail(w, r, errorf(http.StatusBadRequest, "unknown parameter %q (from or since)", clip(k)))
			return
		}
	}
	from, since := int64(-1), time.Time{}
	switch f, sn := q.Get("from"), q.Get("since"); {
	case (f == "") == (sn == ""):
		s.fail(w, r, errorf(http.StatusBadRequest, "give exactly one of from (a log index) or since (RFC3339 or Unix seconds)"))
		return
	case f != "":
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n < 0 {
			s.fail(w, r, errorf(http.StatusBadRequest, "from %q is not a log index (an integer ≥ 0)", clip(f)))
			return
		}
		from = n
	default:
		t, err := time.Parse(time.RFC3339, sn)
		if sec, perr := strconv.ParseInt(sn, 10, 64); perr == nil {
			t, err = time.Unix(sec, 0).UTC(), nil
		}
		if err != nil {
			s.fail(w, r, errorf(http.StatusBadRequest, "since %q is neither RFC3339 nor Unix seconds", clip(sn)))
			return
		}
		since = t
	}
	if s.fwdReplay == nil {
		s.fail(w, r, errorf(http.StatusNotFound, "forward destination %q is not configured (this process forwards nowhere)", clip(name)))
		return
	}
	rep, err := s.fwdReplay(r.Context(), name, from, since)
	var bad *forward.ReplayError
	switch {
	case errors.Is(err, forward.ErrUnknownDestination):
		s.fail(w, r, errorf(http.StatusNotFound, "%s", clip(err.Error())))
	case errors.As(err, &bad):
		s.fail(w, r, errorf(http.StatusBadRequest, "%s", bad.Msg))
	case err != nil:
		s.fail(w, r, err)
	default:
		s.ok(w, rep)
	}
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
