package console

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
)

// export streams the current search through the API's own export handler
// (formats, formula guard, concurrency limit, dedicated connections): the
// console only translates its parameters and checks access by session,
// since a browser link carries no bearer token.
func (c *Console) export(w http.ResponseWriter, r *http.Request, v *view) {
	s := c.parseSearch(r.Context(), r, v)
	if len(s.Errors) > 0 {
		c.fail(w, r, v, http.StatusBadRequest, strings.Join(s.Errors, " "))
		return
	}
	params := s.apiParams()
	params.Set("format", r.URL.Query().Get("format")) // csv, ndjson, or whatever the API accepts (bundle)
	if params.Get("format") == "bundle" && len(params) == 1 && !v.CanAudit() {
		// Unfiltered, a bundle is the whole log: holds and the access trail too.
		c.fail(w, r, v, http.StatusForbidden, v.T("e.bundle_needs_auditor"))
		return
	}
	api := r.Clone(r.Context())
	u := *r.URL
	u.Path, u.RawQuery = "/api/v1/activity_log/export", params.Encode()
	api.URL, api.RequestURI = &u, u.RequestURI()
	c.o.Logger.InfoContext(r.Context(), "console: export", "user", v.User, "format", params.Get("format"))
	ew := &errorAsPage{ResponseWriter: w}
	c.o.Export(ew, api)
	if ew.status != 0 {
		var env struct {
			Message string `json:"message"`
		}
		msg := ew.body.String()
		if json.Unmarshal(ew.body.Bytes(), &env) == nil && env.Message != "" {
			msg = env.Message
		}
		c.fail(w, r, v, ew.status, msg)
	}
}

// errorAsPage passes a successful response through and holds back an
// error's JSON envelope, so the console can show it as a page.
type errorAsPage struct {
	http.ResponseWriter
	status int // the error status held back; 0: none
	body   bytes.Buffer
}

func (e *errorAsPage) WriteHeader(code int) {
	if code >= 400 {
		e.status = code
		return
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *errorAsPage) Write(p []byte) (int, error) {
	if e.status != 0 {
		return e.body.Write(p)
	}
	return e.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection: the export
// pushes its write deadline ahead while it makes progress.
func (e *errorAsPage) Unwrap() http.ResponseWriter { return e.ResponseWriter }

// Flush keeps the export streaming.
func (e *errorAsPage) Flush() {
	if f, ok := e.ResponseWriter.(http.Flusher); ok && e.status == 0 {
		f.Flush()
	}
}
