package api

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
)

// Syncer is what the API needs of the sync engine.
type Syncer interface {
	Trigger(ctx context.Context, workspace string, full bool) (syncer.Triggered, error)
	Status(ctx context.Context) ([]syncer.WorkspaceStatus, error)
	AcknowledgeGaps(ctx context.Context, workspace, note string) ([]storage.Interval, error)
}

type ackRequest struct {
	Workspace string `json:"workspace"`
	Note      string `json:"note"`
}

// ackGaps acknowledges a workspace's current gaps: typically time lost while
// the worker was down longer than TAPD's half year, which no sync can fill.
func (s *Server) ackGaps(w http.ResponseWriter, r *http.Request) {
	var req ackRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Workspace == "" {
		s.fail(w, r, errorf(http.StatusBadRequest, "workspace is required"))
		return
	}
	noteParam(r.Context(), "workspace", req.Workspace)
	noteParam(r.Context(), "note", req.Note)
	acked, err := s.syncer.AcknowledgeGaps(storage.WithToken(r.Context(), TokenName(r.Context())), req.Workspace, req.Note)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "gaps acknowledged", "workspace", req.Workspace, "gaps", len(acked), "note", req.Note)
	s.ok(w, map[string]any{"workspace": req.Workspace, "acknowledged": acked})
}

type triggerRequest struct {
	Workspace string `json:"workspace"`
	Full      bool   `json:"full"`
}

func (s *Server) triggerSync(w http.ResponseWriter, r *http.Request) {
	var req triggerRequest
	if err := decodeOptionalBody(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	noteParam(r.Context(), "workspace", req.Workspace)
	noteParam(r.Context(), "full", strconv.FormatBool(req.Full))
	got, err := s.syncer.Trigger(r.Context(), req.Workspace, req.Full)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "sync triggered", "workspace", req.Workspace, "full", req.Full,
		"queued", len(got.Queued), "already_running", len(got.AlreadyRunning), "failed", len(got.Failed))
	writeJSON(w, http.StatusAccepted, envelope{Code: 0, Message: "success", Data: map[string]any{
		"queued": got.Queued, "already_running": got.AlreadyRunning, "failed": got.Failed, "full": req.Full}})
}

// decodeOptionalBody is decodeBody where an empty body means "defaults".
func decodeOptionalBody(w http.ResponseWriter, r *http.Request, dst any) error {
	if r.ContentLength == 0 {
		return nil
	}
	if r.ContentLength < 0 { // chunked: peek for emptiness
		b := make([]byte, 1)
		n, _ := io.ReadFull(r.Body, b)
		if n == 0 {
			return nil
		}
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b[:n]), r.Body), r.Body}
	}
	return decodeBody(w, r, dst)
}

func (s *Server) syncStatus(w http.ResponseWriter, r *http.Request) {
	if _, err := parseQuery(r); err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.syncer.Status(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	answer := statusEnvelope{envelope: envelope{Code: 0, Message: "success", Data: st}}
	if h, ok := s.syncer.(interface{ Horizon() time.Time }); ok {
		total := beyondTotal{Horizon: h.Horizon()}
		if total.Beyond, err = s.store.RecordsBeyond(r.Context(), total.Horizon); err != nil {
			s.fail(w, r, err)
			return
		}
		answer.BeyondHorizon = &total
	}
	writeJSON(w, http.StatusOK, answer)
}

// statusEnvelope is the sync status: the targets in data and, beside them,
// what only the mirror holds in all (each record once, however many
// targets reported it) — the figure a compliance team reports.
type statusEnvelope struct {
	envelope
	BeyondHorizon *beyondTotal `json:"beyond_horizon,omitempty"`
}

// beyondTotal is the archive's records older than TAPD's current horizon.
type beyondTotal struct {
	Horizon time.Time `json:"horizon"`
	storage.Beyond
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "workspace", "outcome", "limit", "offset")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit, err := q.int("limit", 50, 1, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	offset, err := q.int("offset", 0, 0, maxInt)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	runs, err := s.store.ListRuns(r.Context(), q.str("workspace"), q.str("outcome"), int(limit), int(offset))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.ok(w, runs)
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "run id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	run, err := s.store.GetRun(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.ok(w, run)
}
