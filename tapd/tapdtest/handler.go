package tapdtest

import (
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

type statusRecorder struct {
	http.ResponseWriter
	status    int
	requestID string // sent as meta.request_id
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	r.ParseForm() //nolint:errcheck // a bad form reads as missing parameters, like TAPD
	isLog := r.URL.Path == "/workspaces/member_activity_log"
	s.mu.Lock()
	fault, retryAfter := s.pickFaultLocked()
	rules, latency := s.faults.rules, s.faults.latency
	s.mu.Unlock()
	if fault == "" && isLog {
		fault = s.ruleFault(r.Form, rules) // outside the lock: rules run test code
	}
	s.mu.Lock()
	if fault == "" {
		fault = s.randomFaultLocked()
	}
	if fault == FaultRateLimit && s.faults.penalty > 0 {
		s.faults.penaltyUntil = s.nowLocked().Add(s.faults.penalty) // TAPD penalises the account
	}
	if fault == "" && isLog {
		s.arriveLocked()
	}
	s.rateHeadersLocked(w.Header())
	s.nextRequestID++
	requestID := fmt.Sprintf("%016x", uint64(s.nextRequestID)*0x9e3779b97f4a7c15)
	s.mu.Unlock()

	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK, requestID: requestID}
	logRequest := func() {
		s.mu.Lock()
		s.requests = append(s.requests, Request{Path: r.URL.Path, Query: r.Form, Status: rec.status, Fault: string(fault), RequestID: requestID})
		if isLog {
			s.offset += s.opts.TimePerRequest // the time the answer took, as TAPD's clock sees it
		}
		s.mu.Unlock()
	}
	if fault == FaultReset {
		// Logged before the connection is cut: the client sees the reset at
		// once and may count the requests before this handler returns.
		logRequest()
	} else {
		defer logRequest()
	}
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		}
	}
	if fault != "" {
		s.injectFault(rec, fault, retryAfter)
		return
	}
	switch r.URL.Path {
	case "/tokens/request_token":
		s.requestToken(rec, r) // authenticated by the app's own credentials
		return
	case "/workspaces/member_activity_log", "/workspaces/projects", "/quickstart/testauth":
	default:
		// TAPD answers a path it does not know with a greeting, not a 404,
		// even without credentials.
		writeTAPD(rec, http.StatusOK, 1, "Hello world from TAPD API. 5f3c2a1b", "Documents can be found in https://www.tapd.cn/help/show#1120003271001000103")
		return
	}
	if !s.authorized(rec, r) {
		return
	}
	switch r.URL.Path {
	case "/workspaces/member_activity_log":
		s.memberActivityLog(rec, r)
	case "/workspaces/projects":
		s.companyProjects(rec, r)
	case "/quickstart/testauth":
		writeTAPD(rec, http.StatusOK, 1, map[string]string{"api_user": s.opts.User}, "success")
	}
}

func (s *Server) injectFault(w *statusRecorder, f Fault, retryAfter bool) {
	switch f {
	case FaultRateLimit, FaultPenalty:
		if retryAfter {
			w.Header().Set("Retry-After", "1")
		}
		writeTAPD(w, http.StatusTooManyRequests, 429, "",
			fmt.Sprintf("To many requests, api account %s! max request rates is 1800req/10min", s.opts.User))
	case Fault500:
		writeTAPD(w, http.StatusInternalServerError, 500, "", "Internal Server Error")
	case Fault502HTML:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
	case Fault503:
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "Service Temporarily Unavailable")
	case FaultTruncated:
		body := encodeTAPD(envelope{Status: 1, Data: map[string]any{"perPage": "200", "totalItems": 1009,
			"currentPage": "1", "records": []any{map[string]string{"id": "1", "title": "截断的记录"}}}, Info: "success"})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.Write(body[:len(body)/2])
	case FaultReset:
		if hj, ok := w.ResponseWriter.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
}

func (s *Server) authorized(w *statusRecorder, r *http.Request) bool {
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		token := strings.TrimPrefix(auth, "Bearer ")
		if subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.Token)) == 1 {
			return true // a personal token: no expiry
		}
		s.mu.Lock()
		expiry, issued := s.tokens[token]
		now := s.nowLocked()
		s.mu.Unlock()
		if issued && now.Before(expiry) {
			return true
		}
		info := "The access token provided is invalid"
		if issued {
			info = "The access token provided has expired"
		}
		if s.opts.TokenRejectStatus == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="TAPD Open API", error="invalid_token", error_description="`+info+`"`)
		}
		writeTAPD(w, s.opts.TokenRejectStatus, s.opts.TokenRejectStatus, "", info)
		return false
	}
	user, pass, ok := r.BasicAuth()
	if ok && user == s.opts.User && pass == s.opts.Password {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="TAPD Open API"`)
	writeTAPD(w, http.StatusUnauthorized, 401, "", "Unauthorized"+s.echoAuthorization(r))
	return false
}

// echoAuthorization is what Options.EchoAuthorization adds to a refusal.
func (s *Server) echoAuthorization(r *http.Request) string {
	if !s.opts.EchoAuthorization {
		return ""
	}
	return " (Authorization: " + r.Header.Get("Authorization") + ")"
}

// requestToken is POST /tokens/request_token, the client-credentials grant:
// Basic client_id:client_secret and grant_type=client_credentials give a
// Bearer token valid TokenLifetime on the fake's clock.
func (s *Server) requestToken(w *statusRecorder, r *http.Request) {
	s.mu.Lock()
	s.tokenRequests++
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		writeTAPD(w, http.StatusMethodNotAllowed, 405, "", "The request method must be POST when requesting an access token")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(id), []byte(s.opts.ClientID)) != 1 ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="TAPD Open API"`)
		writeTAPD(w, http.StatusUnauthorized, 401, "", "The client credentials are invalid"+s.echoAuthorization(r))
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "client_credentials" {
		writeTAPD(w, 422, 422, "", fmt.Sprintf("grant_type %q is not supported, use client_credentials", g))
		return
	}
	s.mu.Lock()
	var raw [20]byte
	for i := range raw {
		raw[i] = byte(s.rng.UintN(256))
	}
	token := hex.EncodeToString(raw[:]) // 40 hex digits, like TAPD's
	now := s.nowLocked()
	s.tokens[token] = now.Add(s.opts.TokenLifetime)
	s.mu.Unlock()
	// TAPD's documented answer (open.tapd.cn, client_credentials 模式使用).
	writeTAPD(w, http.StatusOK, 1, map[string]any{
		"access_token": token,
		"expires_in":   int(s.opts.TokenLifetime / time.Second),
		"token_type":   "Bearer",
		"scope":        "bug iteration story task tcase wiki app_auth ",
		"resource":     map[string]string{"type": "open_app_auth", "app_id": "404"},
		"now":          now.Format("2006-01-02 15:04:05"),
	}, "success")
}

// TokenRequests counts calls to POST /tokens/request_token, whatever their outcome.
func (s *Server) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenRequests
}

// RevokeTokens invalidates every OAuth token issued so far, as when an app's
// secret is reset: clients must ask for a new one.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// pageData is data of a member_activity_log answer, in TAPD's field order.
type pageData struct {
	PerPage        string            `json:"perPage"`
	TotalItems     int               `json:"totalItems"`
	CurrentPage    string            `json:"currentPage"`
	Records        []wireRecord      `json:"records"`
	OperateTypes   map[string]string `json:"operate_types"`
	OperateObjects map[string]string `json:"operate_objects"`
}

type wireRecord struct {
	ID            string `json:"id"`
	Action        string `json:"action"`
	Created       string `json:"created"`
	Creator       string `json:"creator"`
	ProjectName   string `json:"project_name"`
	OperateType   string `json:"operate_type"`
	OperateObject string `json:"operate_object"`
	Title         any    `json:"title"` // a string, or rawString for TitleJSON
	URL           string `json:"url"`
	IP            string `json:"ip"`
	UA            string `json:"ua"`
}

// queryLayout is start_time and end_time's layout.
const queryLayout = "2006-01-02 15:04"

func (s *Server) memberActivityLog(w *statusRecorder, r *http.Request) {
	q := r.Form
	ws := q.Get("workspace_id")
	if ws == "" {
		writeTAPD(w, 422, 422, "", "workspace_id is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.knownWorkspace(ws) {
		writeTAPD(w, http.StatusNotFound, 404, "", fmt.Sprintf("workspace %s not existed", ws))
		return
	}
	companyOnly := q.Get("company_only") == "1"
	if companyOnly && ws != s.opts.CompanyID {
		writeTAPD(w, 422, 422, "", "company_only requires workspace_id to be a company id")
		return
	}
	now := s.nowLocked()
	end, start := now, time.Time{}
	var err error
	if v := q.Get("end_time"); v != "" {
		if end, err = time.ParseInLocation(queryLayout, v, Shanghai); err != nil {
			writeTAPD(w, 422, 422, "", "end_time format error, expect Y-m-d H:i")
			return
		}
	}
	if v := q.Get("start_time"); v != "" {
		if start, err = time.ParseInLocation(queryLayout, v, Shanghai); err != nil {
			writeTAPD(w, 422, 422, "", "start_time format error, expect Y-m-d H:i")
			return
		}
	} else {
		start = end.AddDate(0, 0, -7)
	}
	horizon := s.horizonLocked().Truncate(time.Minute)
	// The month rule is checked on the start as asked, before any clamping.
	switch {
	case start.Before(horizon) && !s.opts.HorizonClamp:
		writeTAPD(w, 422, 422, "", s.opts.HorizonError)
		return
	case start.Year() != end.Year() || start.Month() != end.Month():
		writeTAPD(w, 422, 422, "", "start_time 与 end_time 不能跨月")
		return
	case end.Before(start):
		writeTAPD(w, 422, 422, "", "end_time must not be before start_time")
		return
	case start.Before(horizon):
		start = horizon // TAPD silently answers from its horizon
	}
	limit := askedLimit(q)
	limit = min(limit, 200)
	if s.opts.MaxPerPage > 0 {
		limit = min(limit, s.opts.MaxPerPage)
	}
	page := max(atoiOr(q.Get("page"), 1), 1)
	if page*limit > s.opts.PagingCap {
		writeTAPD(w, 422, 422, "", fmt.Sprintf("page * limit must not exceed %d", s.opts.PagingCap))
		return
	}
	to := end.Truncate(time.Minute) // EndExclusive: before hh:mm:00
	if !s.opts.EndExclusive {
		to = to.Add(time.Minute) // the end minute is inclusive: through hh:mm:59
	}
	var all []int
	if to.After(start) { // a clamped window wholly before the horizon is empty
		all = s.selectLocked(ws, companyOnly, start.Truncate(time.Minute), to, q)
	}
	data := pageData{PerPage: strconv.Itoa(limit), TotalItems: len(all), CurrentPage: strconv.Itoa(page),
		Records: []wireRecord{}, OperateTypes: OperateTypes, OperateObjects: OperateObjects}
	if empty := s.opts.PHPEmpty; empty != "" && (page-1)*limit >= len(all) {
		s.writeEmptyPage(w, data, empty)
		return
	}
	for _, at := range all[min((page-1)*limit, len(all)):min(page*limit, len(all))] {
		rec := &s.records[at]
		var title any = rec.Title
		if rec.TitleJSON != "" {
			title = rawString(rec.TitleJSON)
		}
		data.Records = append(data.Records, wireRecord{ID: rec.ID, Action: rec.Action,
			Created: rec.Created.In(Shanghai).Format("2006-01-02 15:04:05"), Creator: rec.Creator,
			ProjectName: rec.ProjectName, OperateType: OperateTypes[rec.TypeKey],
			OperateObject: OperateObjects[rec.ObjectKey], Title: title, URL: rec.URL, IP: rec.IP, UA: rec.UA})
	}
	writeTAPD(w, http.StatusOK, 1, data, "success")
}

// askedLimit is the limit a request asks for; TAPD's default is 20.
func askedLimit(q url.Values) int {
	if limit := atoiOr(q.Get("limit"), 20); limit >= 1 {
		return limit
	}
	return 20
}

// rawString is sent verbatim between quotes: bytes encoding/json would not
// produce (invalid UTF-8, lone surrogate escapes).
type rawString string

func (r rawString) MarshalJSON() ([]byte, error) { return []byte(`"` + string(r) + `"`), nil }

func (s *Server) companyProjects(w *statusRecorder, r *http.Request) {
	if r.Form.Get("company_id") != s.opts.CompanyID {
		writeTAPD(w, http.StatusNotFound, 404, "", fmt.Sprintf("company %s not existed", r.Form.Get("company_id")))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	status := func(id string) string {
		if st := s.projectStatus[id]; st != "" {
			return st
		}
		return "normal"
	}
	if s.opts.CaptureProjectList {
		// The shape of a real answer (DevLake's TAPD e2e raw tables): the
		// company is one of the entries, no entry has a category, counts
		// are numbers, some dates are null.
		entry := func(id, name string, members int) map[string]any {
			return map[string]any{"Workspace": map[string]any{"id": id, "name": name, "pretty_name": id,
				"status": status(id), "secrecy": "0", "created": "2020-06-01 10:00:00", "creator": "admin",
				"begin_date": nil, "end_date": nil, "member_count": members, "parent_id": s.opts.CompanyID}}
		}
		list := []map[string]any{entry(s.opts.CompanyID, "演示公司", 40)}
		list[0]["Workspace"].(map[string]any)["parent_id"] = "0"
		for i, p := range s.projects {
			list = append(list, entry(p.ID, p.Name, 3+i))
		}
		writeTAPD(w, http.StatusOK, 1, list, "success")
		return
	}
	type ws struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Status   string `json:"status"`
		Category string `json:"category"`
	}
	list := []map[string]ws{{"Workspace": {ID: s.opts.CompanyID, Name: "演示公司", Status: "normal", Category: "organization"}}}
	for _, p := range s.projects {
		list = append(list, map[string]ws{"Workspace": {ID: p.ID, Name: p.Name, Status: status(p.ID), Category: "project"}})
	}
	writeTAPD(w, http.StatusOK, 1, list, "success")
}

// writeEmptyPage answers a page without records the way PHP may encode it.
func (s *Server) writeEmptyPage(w *statusRecorder, data pageData, shape PHPEmpty) {
	var out any
	switch shape {
	case EmptyDataList:
		out = []any{}
	case EmptyDataObject:
		out = map[string]any{}
	default:
		var records any = nil // EmptyRecordsNull
		if shape == EmptyRecordsObject {
			records = map[string]any{}
		}
		out = map[string]any{"perPage": data.PerPage, "totalItems": data.TotalItems, "currentPage": data.CurrentPage,
			"records": records, "operate_types": []any{}, "operate_objects": []any{}}
	}
	writeTAPD(w, http.StatusOK, 1, out, "success")
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}

// appendEscape appends \uXXXX for a UTF-16 code unit.
func appendEscape(out []byte, r rune) []byte {
	const hex = "0123456789abcdef"
	return append(out, '\\', 'u', hex[r>>12&0xF], hex[r>>8&0xF], hex[r>>4&0xF], hex[r&0xF])
}

type envelope struct {
	Status int    `json:"status"`
	Data   any    `json:"data"`
	Info   string `json:"info"`
	Meta   *meta  `json:"meta,omitempty"`
}

type meta struct {
	RequestID string `json:"request_id"`
}

// writeTAPD writes TAPD's envelope, with the request's meta.request_id.
func writeTAPD(w *statusRecorder, httpStatus, status int, data any, info string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(httpStatus)
	env := envelope{Status: status, Data: data, Info: info}
	if w.requestID != "" {
		env.Meta = &meta{RequestID: w.requestID}
	}
	w.Write(encodeTAPD(env))
}

// encodeTAPD encodes like PHP's json_encode, as TAPD does: every non-ASCII
// character as \uXXXX (surrogate pairs above U+FFFF), "/" as "\/", and
// control characters such as NUL as \u0000. Bytes that are not UTF-8 (only
// a rawString can hold them) pass through raw, as in some TAPD data.
func encodeTAPD(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("tapdtest: encoding response: %v", err))
	}
	raw := bytes.TrimRight(buf.Bytes(), "\n")
	out := make([]byte, 0, len(raw)*2)
	for len(raw) > 0 {
		r, size := utf8.DecodeRune(raw)
		switch {
		case r == '\\' && len(raw) > 1:
			size = 2 // an escape already made: keep it whole (\/ must not become \\/)
			out = append(out, raw[:2]...)
		case r == '/':
			out = append(out, '\\', '/')
		case r < utf8.RuneSelf:
			out = append(out, byte(r))
		case r == utf8.RuneError && size == 1:
			out = append(out, raw[0])
		case r > 0xFFFF:
			r -= 0x10000
			out = appendEscape(appendEscape(out, 0xD800+(r>>10)), 0xDC00+(r&0x3FF))
		default:
			out = appendEscape(out, r)
		}
		raw = raw[size:]
	}
	return out
}
