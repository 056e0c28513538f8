package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
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
	Source      string          `json:"source"`
	SourceID    string          `json:"source_id"`
	WorkspaceID string          `json:"workspace_id"`
	Extra       json.RawMessage `json:"extra"` // as stored: not decoded and encoded again per row
	IngestedAt  int64           `json:"ingested_at"`
}

func toDetailJSON(a storage.Activity) activityDetailJSON {
	return activityDetailJSON{activityJSON: toJSON(a), Source: a.Source, SourceID: a.SourceID,
		WorkspaceID: a.WorkspaceID, Extra: json.RawMessage(a.ExtraText()), IngestedAt: a.IngestedAt.Unix()}
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

// maxOffset caps offset paging; cursor paging has no cap.
const maxOffset = 100000

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
		if v == nil || *v == "" {
			if required {
				problems = append(problems, fmt.Sprintf("%s is required", name))
			}
			return ""
		}
		if utf8.RuneCountInString(*v) > max { // characters were checked by decodeBody
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
		if !validUnix(*req.Timestamp) {
			problems = append(problems, fmt.Sprintf("timestamp must be Unix seconds from %d to %d (the end of year 9999), got %d", minUnix, maxUnix, *req.Timestamp))
		}
		a.Timestamp = time.Unix(*req.Timestamp, 0).UTC()
	}
	if len(problems) > 0 {
		return a, errorf(http.StatusBadRequest, "invalid activity log: %s", strings.Join(problems, "; "))
	}
	return a, nil
}

// multilineFields are the body fields that may hold tabs and newlines.
var multilineFields = map[string]bool{"action_detail": true, "note": true}

// decodeBody reads one JSON object into dst with clear errors for each way a
// body can be wrong. Encoding is checked on the raw bytes, before decoding
// could replace bad sequences with U+FFFD; every string field is then
// checked for control characters (see badText).
func decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", tooBig.Limit)
	case err != nil:
		return errorf(http.StatusBadRequest, "reading the request body: %s", clip(err.Error()))
	}
	return decodeJSON(raw, dst)
}

// decodeJSON is decodeBody after reading.
func decodeJSON(raw []byte, dst any) error {
	if !utf8.Valid(raw) {
		return errorf(http.StatusBadRequest, "request body is not valid UTF-8")
	}
	if at := loneSurrogate(raw); at >= 0 {
		return errorf(http.StatusBadRequest, "request body has an unpaired UTF-16 surrogate escape at byte %d", at)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
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
	switch {
	case err == nil:
		return checkStrings(raw)
	case errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, "request body is empty; send a JSON object")
	case errors.As(err, &syntax):
		return errorf(http.StatusBadRequest, "malformed JSON at byte %d: %s", syntax.Offset, clip(err.Error()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, "malformed JSON: the body ends too early")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return errorf(http.StatusBadRequest, "request body must be a JSON object, not %s", clip(typ.Value))
		}
		return errorf(http.StatusBadRequest, "field %s must be %s, got %s", clip(typ.Field), jsonKind(typ.Type.Kind().String()), clip(typ.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return errorf(http.StatusBadRequest, "unknown field %s", clip(strings.TrimPrefix(err.Error(), "json: unknown field ")))
	default:
		return errorf(http.StatusBadRequest, "malformed JSON: %s", clip(err.Error()))
	}
}

// checkStrings refuses control characters in the string fields of a body
// that decoded; tabs and newlines pass in multilineFields.
func checkStrings(raw []byte) error {
	var fields map[string]any
	if json.Unmarshal(raw, &fields) != nil {
		return nil // not an object (null): the typed decode said all there is
	}
	names := slices.Sorted(maps.Keys(fields))
	for _, name := range names {
		if v, ok := fields[name].(string); ok {
			if problem := badText(v, multilineFields[strings.ToLower(name)]); problem != "" {
				return errorf(http.StatusBadRequest, "field %s %s", clip(name), problem)
			}
		}
	}
	return nil
}

// loneSurrogate returns the offset of a \uD800–\uDFFF escape that is not
// half of a surrogate pair (JSON decoding would turn it into U+FFFD), or -1.
func loneSurrogate(b []byte) int {
	hex4 := func(i int) (rune, bool) { // the escape \uXXXX starting at i
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 32)
		return rune(n), err == nil
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		r, ok := hex4(i)
		switch {
		case !ok: // another escape: skip the escaped character
			i++
		case r >= 0xD800 && r < 0xDC00:
			if lo, ok := hex4(i + 6); ok && lo >= 0xDC00 && lo < 0xE000 {
				i += 11
				continue
			}
			return i
		case r >= 0xDC00 && r < 0xE000:
			return i
		default:
			i += 5
		}
	}
	return -1
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
	q, f, err := s.readFilters(r, "limit", "offset", "cursor", "detail")
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
	if offset > maxOffset {
		s.fail(w, r, errorf(http.StatusBadRequest, "offset %d is above %d: a deep offset makes the database skip every row before it; page with cursor= (send it empty for the first page) or take everything with /api/v1/activity_log/export", offset, maxOffset))
		return
	}
	detail, err := q.flag("detail")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if detail {
		noteDetail(r.Context())
		if err := s.permit(r, readDetail); err != nil {
			s.fail(w, r, err)
			return
		}
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
	noteRows(r.Context(), int64(len(rows)))
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
	_, f, err := s.readFilters(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	n, err := s.store.CountActivities(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	noteRows(r.Context(), n)
	s.ok(w, map[string]int64{"count": n})
}

func (s *Server) deleteActivity(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	target, err := s.store.GetActivity(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if target.Source != storage.SourceLocal {
		if err := s.permit(r, deleteTAPD); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	deleted, err := s.store.DeleteActivity(storage.WithToken(r.Context(), TokenName(r.Context())), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "activity log deleted", slog.Int64("id", id),
		slog.String("source", deleted.Source), slog.String("source_id", deleted.SourceID),
		slog.String("token", tokenName(r.Context())))
	s.ok(w, map[string]any{"deleted": true, "id": id})
}

func (s *Server) deleteAllActivities(w http.ResponseWriter, r *http.Request) {
	// Many transactions: the trail entry follows the answer, with the total
	// (each record removed is a delete event naming the token).
	n, err := s.store.DeleteAllActivities(storage.WithToken(r.Context(), TokenName(r.Context())))
	noteRows(r.Context(), n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.WarnContext(r.Context(), "all activity logs deleted", slog.Int64("rows", n), slog.String("token", tokenName(r.Context())))
	s.ok(w, map[string]any{"deleted": true, "message": "All activity logs deleted"})
}
