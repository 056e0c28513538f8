package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"unicode/utf8"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
)

// envelope is the shape of every response: code 0 means success.
type envelope struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data"`
}

// Error is a failure a client can act on: an HTTP status and a human message.
// Its envelope code is the HTTP status, so it is never 0.
type Error struct {
	Status  int
	Message string
	Header  http.Header // sent with the response (WWW-Authenticate, Retry-After)
}

func (e *Error) Error() string { return e.Message }

func errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v) //nolint:errcheck // the client went away; nothing left to tell it
}

func (s *Server) ok(w http.ResponseWriter, data any) {
	writeJSON(w, http.StatusOK, envelope{Code: 0, Message: "success", Data: data})
}

// fail writes err as an error envelope. Domain errors map to their statuses
// here, once; other errors that are not *Error are internal: logged with
// detail, answered with a generic 500.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	var held *storage.HeldError
	switch {
	case errors.As(err, &e):
	case errors.Is(err, storage.ErrNotFound):
		what := notFoundNames[r.Pattern]
		if what == "" {
			what = "record"
		}
		e = errorf(http.StatusNotFound, "%s %s not found", what, clip(r.PathValue("id")))
	case errors.Is(err, syncer.ErrUnknownWorkspace):
		e = errorf(http.StatusNotFound, "%s", clip(err.Error()))
	case errors.As(err, &held):
		e = errorf(http.StatusForbidden, "%s (%s); a held record cannot be deleted or purged until the hold is released",
			clip(held.Error()), clip(held.Hold.Reason))
	case errors.Is(err, storage.ErrUnlogged):
		e = errorf(http.StatusConflict, "the record is not in the integrity log: it was written behind the service's back (or by an older version still running); run tapd-mirror verify --database")
	case errors.Is(err, syncer.ErrBusy):
		e = errorf(http.StatusConflict, "%s; wait for the running sync (GET /api/v1/sync/status)", clip(err.Error()))
	default:
		s.log.ErrorContext(r.Context(), "request failed", slog.String("method", r.Method),
			slog.String("path", clip(r.URL.Path)), slog.Any("err", err))
		e = errorf(http.StatusInternalServerError, "internal error; the server log has the details")
	}
	for k, v := range e.Header {
		w.Header()[k] = v
	}
	writeJSON(w, e.Status, envelope{Code: e.Status, Message: e.Message, Data: nil})
}

// notFoundNames names what each {id} route looks up, for its 404 message.
var notFoundNames = map[string]string{
	"DELETE /api/v1/activity_log/{id}": "activity log",
	"GET /api/v1/sync/runs/{id}":       "sync run",
	"GET /api/v1/integrity/proof/{id}": "logged record",
	"DELETE /api/v1/holds/{id}":        "legal hold",
}

// maxEcho bounds how much client input an error message repeats.
const maxEcho = 100

// clip shortens client-supplied text to maxEcho characters for echoing in
// an error message.
func clip(s string) string {
	if utf8.RuneCountInString(s) <= maxEcho {
		return s
	}
	return string([]rune(s)[:maxEcho]) + "…"
}
