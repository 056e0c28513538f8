package api

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
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

// exportActivities streams every matching record, oldest first, as CSV
// (RFC 4180, UTF-8, header row) or NDJSON, row by row. At most
// cap(s.exports) run at once, each on a connection of the store's export
// pool, so slow export clients cannot starve other requests or the sync.
func (s *Server) exportActivities(w http.ResponseWriter, r *http.Request) {
	q, f, err := filterQuery(r, "format")
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
	var write func(storage.Activity) error
	flush := func() error { return nil } // the format's own buffer, before buf
	buf := bufio.NewWriterSize(w, 64<<10)
	switch format {
	case "csv":
		cw := csv.NewWriter(buf)
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="activity_log.csv"`)
		if err := cw.Write(csvHeader); err != nil {
			return
		}
		write = func(a storage.Activity) error {
			extra, _ := json.Marshal(a.ExtraFields())
			row := []string{strconv.FormatInt(a.ID, 10), a.Platform, a.Serial, a.ActionType, a.ActionDetail,
				a.Username, strconv.FormatInt(a.Timestamp.Unix(), 10), a.Timestamp.UTC().Format(time.RFC3339),
				a.Source, a.SourceID, a.WorkspaceID, string(extra)}
			for i, cell := range row {
				row[i] = inertCell(cell)
			}
			return cw.Write(row)
		}
		flush = func() error { cw.Flush(); return cw.Error() }
	case "ndjson":
		w.Header().Set("Content-Type", "application/x-ndjson; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="activity_log.ndjson"`)
		enc := json.NewEncoder(buf)
		enc.SetEscapeHTML(false)
		write = func(a storage.Activity) error { return enc.Encode(toDetailJSON(a)) }
	default:
		s.fail(w, r, errorf(http.StatusBadRequest, "parameter format must be csv, ndjson or bundle, got %q", format))
		return
	}
	flusher, _ := w.(http.Flusher)
	rows := 0
	err = s.store.StreamActivities(r.Context(), f, func(a storage.Activity) error {
		if err := write(a); err != nil {
			return err
		}
		if rows++; rows%exportFlushEvery == 0 {
			if err := flush(); err != nil {
				return err
			}
			if err := buf.Flush(); err != nil {
				return err
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = buf.Flush()
	}
	if err != nil {
		// Headers are gone: the only honest signal left is a cut-off body.
		s.log.ErrorContext(r.Context(), "export aborted", "rows", rows, "err", err)
		panic(http.ErrAbortHandler)
	}
	s.log.InfoContext(r.Context(), "export finished", "format", format, "rows", rows)
}
