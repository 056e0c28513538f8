package api

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
)

// exportFlushEvery rows, the response is flushed: clients see progress and
// the server holds no more than one buffer of output.
const exportFlushEvery = 500

var csvHeader = []string{"id", "platform", "serial", "action_type", "action_detail", "username", "timestamp",
	"time", "source", "source_id", "workspace_id", "extra"}

// inertCell keeps a spreadsheet from reading a CSV cell as a formula: text
// starting with = + - @, tab or carriage return (a title or user name
// planted in TAPD) gets a leading apostrophe. NDJSON stays raw.
func inertCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// exportFromAPI is exportActivities for a bearer token: a bundle of the
// whole log needs the auditor scope (the console checks its session).
func (s *Server) exportFromAPI(w http.ResponseWriter, r *http.Request) {
	if q := r.URL.Query(); q.Get("format") == "bundle" && !slices.ContainsFunc(filterParams, func(k string) bool { return q.Get(k) != "" }) {
		if err := s.permit(r, fullBundle); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	s.exportActivities(w, r)
}

// exportActivities streams every matching record, oldest first, as CSV
// (RFC 4180, UTF-8, header row) or NDJSON, row by row. At most
// cap(s.exports) run at once, each on a connection of the store's export
// pool, so slow export clients cannot starve other requests or the sync.
func (s *Server) exportActivities(w http.ResponseWriter, r *http.Request) {
	q, f, err := filterQuery(r, "format") // the route (or the console, by session) needs read already
	if err != nil {
		s.fail(w, r, err)
		return
	}
	format := q.str("format")
	if format == "" {
		format = "csv"
	}
	select {
	case s.exports <- struct{}{}:
		defer func() { <-s.exports }()
	default:
		s.fail(w, r, &Error{Status: http.StatusTooManyRequests,
			Message: fmt.Sprintf("%d exports are already running, the most allowed at once (export.max_concurrent); retry when one finishes", cap(s.exports)),
			Header:  http.Header{"Retry-After": {"30"}}})
		return
	}
	if format == "bundle" {
		s.exportBundle(w, r, q, f)
		return
	}
	var line func([]byte, *storage.ExportRow) []byte
	buf := bufio.NewWriterSize(w, 64<<10)
	switch format {
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="activity_log.csv"`)
		buf.WriteString(strings.Join(csvHeader, ",") + "\n") //nolint:errcheck // a failed write shows at the first flush
		line = appendCSVRow
	case "ndjson":
		w.Header().Set("Content-Type", "application/x-ndjson; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="activity_log.ndjson"`)
		line = appendNDJSONRow
	default:
		s.fail(w, r, errorf(http.StatusBadRequest, "parameter format must be csv, ndjson or bundle, got %q", format))
		return
	}
	progress := s.exportProgress(w)
	rows := 0
	var b []byte // one line buffer for the whole export
	err = s.store.StreamExportRows(r.Context(), f, func(row *storage.ExportRow) error {
		b = line(b[:0], row)
		if _, err := buf.Write(b); err != nil {
			return err
		}
		if rows++; rows%exportFlushEvery == 0 {
			if err := buf.Flush(); err != nil {
				return err
			}
			return progress()
		}
		return nil
	})
	if err == nil {
		err = buf.Flush()
	}
	noteRows(r.Context(), int64(rows))
	if err != nil {
		// Headers are gone: the only honest signal left is a cut-off body.
		s.log.ErrorContext(r.Context(), "export aborted", "rows", rows, "err", err)
		noteOutcome(r.Context(), storage.AccessError)
		panic(http.ErrAbortHandler)
	}
	s.log.InfoContext(r.Context(), "export finished", "format", format, "rows", rows)
}

// exportProgress returns what an export calls after each chunk it wrote: it
// flushes, then pushes the write deadline exportStall ahead. So an export
// runs as long as it makes progress, whatever the server's WriteTimeout,
// and a client that stops reading is dropped once a write blocks that long.
func (s *Server) exportProgress(w http.ResponseWriter) func() error {
	rc := http.NewResponseController(w)
	extend := func() error {
		if err := rc.SetWriteDeadline(time.Now().Add(s.exportStall)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return nil
	}
	extend() //nolint:errcheck // before any byte: a failure shows at the first write
	return func() error {
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return extend()
	}
}
