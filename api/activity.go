package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// activityJSON is a record exactly as the contract shows it.
type activityJSON struct {
	ID           int64  `json:"id"`
	Platform     string `json:"platform"`
	Serial       string `json:"serial"`
	ActionType   string `json:"action_type"`
	ActionDetail string `json:"action_detail"`
	Username     string `json:"username"`
	Timestamp    int64  `json:"timestamp"`
}

func toJSON(a storage.Activity) activityJSON {
	return activityJSON{ID: a.ID, Platform: a.Platform, Serial: a.Serial, ActionType: a.ActionType,
		ActionDetail: a.ActionDetail, Username: a.Username, Timestamp: a.Timestamp.Unix()}
}

// activityDetailJSON adds provenance to the contract's fields (?detail=1, export).
type activityDetailJSON struct {
	activityJSON
	Source      string            `json:"source"`
	SourceID    string            `json:"source_id"`
	WorkspaceID string            `json:"workspace_id"`
	Extra       map[string]string `json:"extra"`
	IngestedAt  int64             `json:"ingested_at"`
}

func toDetailJSON(a storage.Activity) activityDetailJSON {
	return activityDetailJSON{activityJSON: toJSON(a), Source: a.Source, SourceID: a.SourceID,
		WorkspaceID: a.WorkspaceID, Extra: a.ExtraFields(), IngestedAt: a.IngestedAt.Unix()}
}

// pagedEnvelope is the envelope plus next_cursor, used only when the request
// asked for keyset paging, so the contract's shape is otherwise untouched.
type pagedEnvelope struct {
	envelope
	NextCursor *string `json:"next_cursor"`
}

// createRequest is the POST body. Pointers tell "absent" from "empty".
type createRequest struct {
	Platform     *string `json:"platform"`
	Serial       *string `json:"serial"`
	ActionType   *string `json:"action_type"`
	ActionDetail *string `json:"action_detail"`
	Username     *string `json:"username"`
	Timestamp    *int64  `json:"timestamp"`
}

// Field limits: generous for real records, small enough to stop garbage.
const (
	maxShortField  = 255
	maxDetailField = 64 << 10
)

func (s *Server) createActivity(w http.ResponseWriter, r *http.Request) {
	if _, err := parseQuery(r); err != nil {
		s.fail(w, r, err)
		return
	}
	var req createRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := req.activity(s.now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := s.store.InsertActivity(r.Context(), a)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.ok(w, map[string]int64{"id": id})
}

func (req createRequest) activity(now time.Time) (storage.Activity, error) {
	var problems []string
	text := func(name string, v *string, required bool, max int) string {
		switch {
		case v == nil || *v == "":
			if required {
				problems = append(problems, fmt.Sprintf("%s is required", name))
			}
			return ""
		case !utf8.ValidString(*v):
			problems = append(problems, fmt.Sprintf("%s is not valid UTF-8", name))
		case utf8.RuneCountInString(*v) > max:
			problems = append(problems, fmt.Sprintf("%s is longer than %d characters", name, max))
		}
		return *v
	}
	a := storage.Activity{
		Platform:     text("platform", req.Platform, true, maxShortField),
		Serial:       text("serial", req.Serial, false, maxShortField),
		ActionType:   text("action_type", req.ActionType, true, maxShortField),
		ActionDetail: text("action_detail", req.ActionDetail, false, maxDetailField),
		Username:     text("username", req.Username, false, maxShortField),
		Timestamp:    now.Truncate(time.Second),
		Source:       storage.SourceLocal,
	}
	if req.Timestamp != nil {
		if *req.Timestamp <= 0 {
			problems = append(problems, fmt.Sprintf("timestamp must be positive Unix seconds, got %d", *req.Timestamp))
		}
		a.Timestamp = time.Unix(*req.Timestamp, 0).UTC()
	}
	if len(problems) > 0 {
		return a, errorf(http.StatusBadRequest, "invalid activity log: %s", strings.Join(problems, "; "))
	}
	return a, nil
}

// decodeBody reads one JSON object into dst with clear errors for each way a
// body can be wrong.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil && dec.More() {
		err = errors.New("trailing data")
	}
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("trailing data")
		}
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooBig):
		return errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", tooBig.Limit)
	case errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, "request body is empty; send a JSON object")
	case errors.As(err, &syntax):
		return errorf(http.StatusBadRequest, "malformed JSON at byte %d: %v", syntax.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, "malformed JSON: the body ends too early")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return errorf(http.StatusBadRequest, "request body must be a JSON object, not %s", typ.Value)
		}
		return errorf(http.StatusBadRequest, "field %s must be %s, got %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return errorf(http.StatusBadRequest, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return errorf(http.StatusBadRequest, "malformed JSON: %v", err)
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int64", "int":
		return "an integer"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	}
	return "a " + goKind
}

func (s *Server) listActivities(w http.ResponseWriter, r *http.Request) {
	q, f, err := filterQuery(r, "limit", "offset", "cursor", "detail")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit, err := q.int("limit", 100, 1, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	offset, err := q.int("offset", 0, 0, maxInt)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	detail, err := q.flag("detail")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	_, keyset := q.v["cursor"]
	if keyset {
		if _, both := q.v["offset"]; both {
			s.fail(w, r, errorf(http.StatusBadRequest, "use either cursor or offset, not both"))
			return
		}
		if f.After, err = decodeCursor(q.str("cursor")); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	rows, err := s.store.ListActivities(r.Context(), f, int(limit), int(offset))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var data any
	if detail {
		out := make([]activityDetailJSON, len(rows))
		for i, a := range rows {
			out[i] = toDetailJSON(a)
		}
		data = out
	} else {
		out := make([]activityJSON, len(rows))
		for i, a := range rows {
			out[i] = toJSON(a)
		}
		data = out
	}
	if !keyset {
		s.ok(w, data)
		return
	}
	page := pagedEnvelope{envelope: envelope{Code: 0, Message: "success", Data: data}}
	if len(rows) == int(limit) {
		next := encodeCursor(rows[len(rows)-1])
		page.NextCursor = &next
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) countActivities(w http.ResponseWriter, r *http.Request) {
	_, f, err := filterQuery(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := s.store.CountActivities(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.ok(w, map[string]int64{"count": n})
}

func (s *Server) deleteActivity(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	deleted, err := s.store.DeleteActivity(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		s.fail(w, r, errorf(http.StatusNotFound, "activity log %d not found", id))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "activity log deleted", slog.Int64("id", id),
		slog.String("source", deleted.Source), slog.String("source_id", deleted.SourceID))
	s.ok(w, map[string]any{"deleted": true, "id": id})
}

func (s *Server) deleteAllActivities(w http.ResponseWriter, r *http.Request) {
	n, err := s.store.DeleteAllActivities(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.WarnContext(r.Context(), "all activity logs deleted", slog.Int64("rows", n))
	s.ok(w, map[string]any{"deleted": true, "message": "All activity logs deleted"})
}
