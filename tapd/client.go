package tapd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/time/rate"
)

// Options configures a Client. Zero values take the documented defaults.
type Options struct {
	BaseURL     string // default https://api.tapd.cn
	APIUser     string // Basic Auth, with APIPassword
	APIPassword string
	AccessToken string // Bearer, instead of user/password
	// ClientID and ClientSecret are an OAuth app's: the client obtains a
	// Bearer token with the client-credentials grant and renews it. Exactly
	// one of user/password, AccessToken and ClientID/ClientSecret may be set.
	ClientID     string
	ClientSecret string
	Location     *time.Location // TAPD's zone; default Asia/Shanghai
	UserAgent    string         // default tapd-mirror/dev

	// RequestsPerMinute is the client-side quota; default 60; < 0 disables
	// the limiter. A 429 announcing a lower account quota lowers it (RateLimit).
	RequestsPerMinute int
	Timeout           time.Duration // per attempt; default 30s
	MaxRetries        int           // default 6
	RetryWaitMin      time.Duration // backoff floor for 5xx/network errors; default 1s
	RetryWaitMax      time.Duration // backoff ceiling; default 60s
	MaxRetryAfter     time.Duration // cap on a Retry-After sent with a 5xx; default 2m
	// PenaltyMax is the longest pause after TAPD's 429s: the first pauses
	// the whole client a minute, each further refusal in a row doubles it
	// up to PenaltyMax (a longer Retry-After is honoured up to it too);
	// default 30m. A 429 never fails a call: it waits.
	PenaltyMax time.Duration

	// Now is the client's clock (token renewal, quota pauses); default time.Now.
	Now func() time.Time
	// WaitUntil blocks until Now reaches t or ctx ends (quota pauses);
	// default a timer. Tests pass one that moves a fake clock instead.
	WaitUntil func(ctx context.Context, t time.Time) error

	Logger *slog.Logger
	// Observe, when set, is told of every attempt (for metrics): HTTP status
	// (0 for a network error), attempt number from 1, and the time it took.
	Observe func(status, attempt int, took time.Duration)
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
}

// Client calls TAPD. It is safe for concurrent use; all calls share one
// rate limiter and, with an OAuth app, one access token.
type Client struct {
	base    *url.URL
	opts    Options
	http    *retryablehttp.Client
	limiter *rate.Limiter
	gate    gate // quota penalty and pacing, shared by every call
	log     *slog.Logger
	waits   atomic.Int64 // nanoseconds spent waiting on the limiter
	oauth   *tokenSource // nil unless ClientID is set

	rateMu      sync.Mutex
	perMinute   float64       // the limiter's rate in requests per minute
	quotaWindow time.Duration // the period of TAPD's quota, from a 429's text; 0 unknown
}

// New builds a Client.
func New(o Options) (*Client, error) {
	if o.BaseURL == "" {
		o.BaseURL = "https://api.tapd.cn"
	}
	methods := 0
	for _, set := range []bool{o.APIUser != "" || o.APIPassword != "", o.AccessToken != "", o.ClientID != "" || o.ClientSecret != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		return nil, errors.New("tapd: set only one way to authenticate: api_user/api_password, access_token, or client_id/client_secret")
	}
	if (o.ClientID == "") != (o.ClientSecret == "") {
		return nil, errors.New("tapd: client_id and client_secret must be set together")
	}
	base, err := url.Parse(strings.TrimRight(o.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("tapd base URL %q is not an http(s) URL", o.BaseURL)
	}
	if o.Location == nil {
		loc, err := time.LoadLocation("Asia/Shanghai")
		if err != nil {
			loc = time.FixedZone("CST", 8*3600)
		}
		o.Location = loc
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.Timeout, 30*time.Second)
	def(&o.RetryWaitMin, time.Second)
	def(&o.RetryWaitMax, time.Minute)
	def(&o.MaxRetryAfter, 2*time.Minute)
	def(&o.PenaltyMax, 30*time.Minute)
	if o.PenaltyMax < firstCooldown {
		return nil, fmt.Errorf("tapd: penalty_max %v is below the first pause after a 429 (%v)", o.PenaltyMax, firstCooldown)
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 6
	}
	if o.RequestsPerMinute == 0 {
		o.RequestsPerMinute = 60
	}
	if o.UserAgent == "" {
		o.UserAgent = "tapd-mirror/dev"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WaitUntil == nil {
		o.WaitUntil = waitUntil(o.Now)
	}
	c := &Client{base: base, opts: o, log: o.Logger}
	if o.ClientID != "" {
		c.oauth = &tokenSource{c: c}
	}
	if o.RequestsPerMinute > 0 {
		c.perMinute = float64(o.RequestsPerMinute)
		perSec := c.perMinute / 60
		c.limiter = rate.NewLimiter(rate.Limit(perSec), max(1, int(perSec)))
	}
	inner := o.Transport
	if inner == nil {
		inner = http.DefaultTransport.(*http.Transport).Clone()
	}
	rc := retryablehttp.NewClient()
	// No http.Client.Timeout: it would count the time a request waits for
	// the quota; attemptTransport times each attempt from when it is sent.
	rc.HTTPClient = &http.Client{Transport: &attemptTransport{c: c, next: inner}}
	rc.Logger = nil // attempts are logged by attemptTransport, without credentials
	rc.RetryMax = o.MaxRetries
	rc.RetryWaitMin = o.RetryWaitMin
	rc.RetryWaitMax = o.RetryWaitMax
	rc.CheckRetry = c.checkRetry
	rc.Backoff = c.backoff
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	c.http = rc
	return c, nil
}

// Location is TAPD's zone, in which query times are written and created
// is read; callers take it from here so it is configured in one place.
func (c *Client) Location() *time.Location { return c.opts.Location }

// LimiterWait is the total time calls spent waiting for the rate limiter.
func (c *Client) LimiterWait() time.Duration { return time.Duration(c.waits.Load()) }

// MemberActivityLog fetches one page of GET /workspaces/member_activity_log.
func (c *Client) MemberActivityLog(ctx context.Context, q Query) (Page, error) {
	op := "member_activity_log workspace " + q.WorkspaceID
	params := url.Values{"workspace_id": {q.WorkspaceID}}
	if q.CompanyOnly {
		params.Set("company_only", "1")
	}
	setInt := func(k string, v int) {
		if v > 0 {
			params.Set(k, strconv.Itoa(v))
		}
	}
	setInt("limit", q.Limit)
	setInt("page", q.Page)
	setTime := func(k string, t time.Time) {
		if !t.IsZero() {
			params.Set(k, t.In(c.opts.Location).Format(QueryTimeLayout))
		}
	}
	setTime("start_time", q.Start)
	setTime("end_time", q.End)
	for k, v := range map[string]string{"operator": q.Operator, "operate_type": q.OperateType,
		"operator_object": q.OperatorObject, "ip": q.IP} {
		if v != "" {
			params.Set(k, v)
		}
	}
	data, typed, err := c.get(ctx, op, "/workspaces/member_activity_log", params, func() any { return new(wirePage) })
	if err != nil {
		return Page{}, err
	}
	w, _ := typed.(*wirePage)
	if w == nil {
		w = new(wirePage)
		if err := json.Unmarshal(data, w); err != nil {
			return Page{}, &Error{Kind: ErrMalformed, Op: op, Info: err.Error()}
		}
	}
	return c.decodePage(op, w)
}

func (c *Client) decodePage(op string, w *wirePage) (Page, error) {
	p := Page{PerPage: int(w.PerPage), TotalItems: int(w.TotalItems), CurrentPage: int(w.CurrentPage),
		OperateTypes: w.OperateTypes, OperateObjects: w.OperateObjects, Records: make([]Record, 0, len(w.Records))}
	for _, r := range w.Records {
		created, err := time.ParseInLocation(TimeLayout, string(r.Created), c.opts.Location)
		if err != nil || r.ID == "" {
			return Page{}, &Error{Kind: ErrMalformed, Op: op, Info: fmt.Sprintf("record %q has created %q, want %q", r.ID, r.Created, TimeLayout)}
		}
		p.Records = append(p.Records, Record{ID: string(r.ID), Action: string(r.Action), Created: created,
			CreatedRaw: string(r.Created), Creator: string(r.Creator), ProjectName: string(r.ProjectName),
			OperateType: string(r.OperateType), OperateObject: string(r.OperateObject),
			Title: string(r.Title), URL: string(r.URL), IP: string(r.IP), UA: string(r.UA)})
	}
	return p, nil
}

// Projects lists the projects of a company, closed ones included (their
// logs expire like the others'; Project.Status tells them apart). The
// company itself, which TAPD lists among them, is left out by its id: the
// real answer has no category field to tell it by.
func (c *Client) Projects(ctx context.Context, companyID string) ([]Project, error) {
	op := "projects of company " + companyID
	data, _, err := c.get(ctx, op, "/workspaces/projects", url.Values{"company_id": {companyID}}, nil)
	if err != nil {
		return nil, err
	}
	var entries phpList[wireProjectEntry]
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, &Error{Kind: ErrMalformed, Op: op, Info: "data is not a list of workspaces: " + snippet(data)}
	}
	out := []Project{}
	for _, e := range entries {
		if e.Workspace == nil || e.Workspace.ID == "" {
			return nil, &Error{Kind: ErrMalformed, Op: op, Info: "an entry has no Workspace.id: " + snippet(data)}
		}
		if string(e.Workspace.ID) == companyID {
			continue
		}
		out = append(out, Project{ID: string(e.Workspace.ID), Name: string(e.Workspace.Name),
			Status: string(e.Workspace.Status), Category: string(e.Workspace.Category)})
	}
	return out, nil
}

// get performs one logical call (with retries) and returns the envelope's
// data. With newData, a successful body is decoded into a fresh newData()
// in the same pass that validates it, returned as typed (data is then nil).
// With an OAuth app, a refused token is renewed and the call made once more.
func (c *Client) get(ctx context.Context, op, path string, params url.Values, newData func() any) (data json.RawMessage, typed any, err error) {
	u := *c.base
	u.Path += path
	u.RawQuery = params.Encode()
	cl := call{op: op, method: http.MethodGet, url: u.String(), newData: newData}
	if c.oauth == nil {
		cl.auth = func(req *retryablehttp.Request) {
			if c.opts.AccessToken != "" {
				req.Header.Set("Authorization", "Bearer "+c.opts.AccessToken)
			} else if c.opts.APIUser != "" {
				req.SetBasicAuth(c.opts.APIUser, c.opts.APIPassword)
			}
		}
		return c.do(ctx, cl)
	}
	for renewed := false; ; renewed = true {
		token, err := c.oauth.get(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: getting an access token: %w", op, err)
		}
		cl.auth = func(req *retryablehttp.Request) { req.Header.Set("Authorization", "Bearer "+token) }
		data, typed, err = c.do(ctx, cl)
		var te *Error
		if renewed || !errors.As(err, &te) || !te.tokenRefused {
			return data, typed, err
		}
		// Expired or revoked before our renewal time (clock skew, a reset
		// secret): renew now, once, and try again.
		c.log.InfoContext(ctx, "TAPD refused the access token; renewing it", "op", op, "status", te.HTTPStatus)
		c.oauth.invalidate(token)
	}
}

// call is one logical request.
type call struct {
	op, method, url string
	form            url.Values // POST body, form-encoded
	auth            func(*retryablehttp.Request)
	newData         func() any
	secretBody      bool // the answer holds a secret: never quote it in errors
}

// do sends cl with retries and classifies the answer; see get.
func (c *Client) do(ctx context.Context, cl call) (data json.RawMessage, typed any, err error) {
	ctx = context.WithValue(ctx, attemptKey{}, new(atomic.Int32))
	var body any
	if cl.form != nil {
		body = []byte(cl.form.Encode()) // bytes, so that retries can resend it
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, cl.method, cl.url, body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: building request: %w", cl.op, err)
	}
	req.Header.Set("User-Agent", c.opts.UserAgent)
	req.Header.Set("Accept", "application/json")
	if cl.form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cl.auth != nil {
		cl.auth(req)
	}
	// Read and decode the whole body inside the retry loop, so that a
	// truncated or non-JSON 2xx body is retried like a 5xx.
	typedOK := false
	req.SetResponseHandler(func(resp *http.Response) error {
		body, err := bufferBody(resp)
		if err != nil || resp.StatusCode/100 != 2 {
			return err
		}
		if cl.newData == nil {
			if !json.Valid(body) {
				return errBadBody
			}
			return nil
		}
		env := struct {
			Status flexInt `json:"status"`
			Data   any     `json:"data"`
		}{Data: cl.newData()}
		err = json.Unmarshal(body, &env)
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return errBadBody
		}
		typed, typedOK = env.Data, err == nil && env.Status == 1
		return nil
	})
	resp, err := c.http.Do(req)
	// A 429 is "later", never "failed": the gate pauses every call, and
	// this one is sent again once TAPD's penalty is over.
	for err == nil && resp.StatusCode == http.StatusTooManyRequests && ctx.Err() == nil {
		io.Copy(io.Discard, resp.Body) //nolint:errcheck // draining for reuse
		resp.Body.Close()
		resp, err = c.http.Do(req)
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, nil, c.pausedErr(cl.op, ctxErr)
	}
	if resp == nil {
		return nil, nil, &Error{Kind: ErrServer, Op: cl.op, Info: redactErr(err).Error(),
			Hint: "TAPD could not be reached; check tapd.base_url and the network"}
	}
	defer resp.Body.Close()
	if typedOK && resp.StatusCode == http.StatusOK && err == nil {
		return nil, typed, nil
	}
	raw, _ := io.ReadAll(resp.Body)
	data, err = c.classify(cl.op, resp, raw, cl.secretBody)
	return data, nil, err
}

// classify turns a final response into data or a typed error.
func (c *Client) classify(op string, resp *http.Response, body []byte, secretBody bool) (json.RawMessage, error) {
	var env wireEnvelope
	jsonErr := json.Unmarshal(body, &env)
	info := string(env.Info)
	switch {
	case jsonErr != nil && secretBody:
		info = fmt.Sprintf("body is not JSON (%d bytes, not quoted: it may hold a token)", len(body))
	case jsonErr != nil:
		info = "body is not JSON: " + snippet(body)
	}
	status := resp.StatusCode
	if status == http.StatusOK && jsonErr == nil && env.Status != 1 {
		status = int(env.Status) // TAPD puts the real status in the envelope
	}
	e := &Error{Op: op, HTTPStatus: resp.StatusCode, Info: info, RequestID: env.Meta.RequestID, status: status}
	switch {
	case status == http.StatusOK && jsonErr == nil && greeting(env.Data):
		// TAPD's answer to a path it does not know: the base URL is wrong.
		var text string
		json.Unmarshal(env.Data, &text) //nolint:errcheck // greeting checked it is a string
		e.Kind, e.Info = ErrBaseURL, "TAPD answered with its greeting instead of data: "+snippet([]byte(text))
		e.Hint = "set tapd.base_url (TAPD_MIRROR_TAPD_BASE_URL) to the TAPD API root, e.g. https://api.tapd.cn"
	case status == http.StatusOK && jsonErr == nil:
		return env.Data, nil
	case status == http.StatusOK:
		e.Kind = ErrMalformed
	case status == http.StatusUnauthorized || (status == 422 && strings.Contains(strings.ToLower(info), "access token")):
		e.Kind, e.Hint, e.tokenRefused = ErrAuth, c.authHint(), true
	case status == http.StatusForbidden:
		e.Kind, e.Hint = ErrAuth, "the TAPD API account lacks permission for this workspace"
	case status == http.StatusNotFound:
		e.Kind, e.Hint = ErrNotFound, "check the workspace id in sync.workspaces (TAPD_MIRROR_WORKSPACES)"
	case status == http.StatusTooManyRequests:
		e.Kind, e.Hint = ErrRateLimited, "lower tapd.requests_per_minute or ask TAPD for a larger quota"
	case status >= 500:
		e.Kind = ErrServer
	case status == 422 && beyondHorizon(info):
		e.Kind, e.Hint = ErrBeyondHorizon, "TAPD keeps only the last half year; this window is a gap"
	case status >= 400:
		e.Kind = ErrParam
	default:
		e.Kind = ErrMalformed
	}
	return nil, e
}

// greeting reports whether a successful answer's data is a string: TAPD's
// "Hello world from TAPD API" on a path it does not serve. No endpoint the
// client calls answers with a bare string.
func greeting(data json.RawMessage) bool {
	data = bytes.TrimSpace(data)
	return len(data) > 0 && data[0] == '"'
}

// authHint says which credentials to check.
func (c *Client) authHint() string {
	if c.oauth != nil {
		return "TAPD refused a freshly issued access token; check the TAPD app's client id, secret and permissions"
	}
	return "check TAPD api_user/api_password (TAPD_MIRROR_TAPD_API_USER, TAPD_MIRROR_TAPD_API_PASSWORD) or access_token (TAPD_MIRROR_TAPD_ACCESS_TOKEN)"
}

// beyondHorizon recognizes TAPD's "start_time 只能查最近半年内的数据".
func beyondHorizon(info string) bool {
	lower := strings.ToLower(info)
	return strings.Contains(info, "半年") || strings.Contains(lower, "half year") || strings.Contains(lower, "half a year")
}

// bufferBody reads the body into memory, leaving a re-readable copy in resp.
func bufferBody(resp *http.Response) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("reading TAPD response: %w", err)
	}
	return body, nil
}

// errBadBody marks a 2xx whose body is not complete JSON (TAPD sometimes
// truncates large pages or sends HTML): retried.
var errBadBody = errors.New("TAPD response body is not complete JSON")

// checkRetry retries network errors, 5xx and broken 2xx bodies; never 4xx
// (a 429 waits for the quota in do); and stops at once when the context ends.
func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if errors.Is(err, errBadBody) {
		return true, nil
	}
	if err != nil {
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	switch resp.StatusCode {
	case http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true, nil
	}
	return false, nil
}

// backoff honours a Retry-After (capped); otherwise exponential from
// RetryWaitMin, jittered.
func (c *Client) backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil {
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), c.opts.Now()); ok {
			return min(d, c.opts.MaxRetryAfter)
		}
	}
	d := lo << min(attempt, 16)
	if d <= 0 || d > hi {
		d = hi
	}
	return d/2 + rand.N(d/2+1) // jitter: between half and all of d
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// redactErr strips credentials from URLs inside transport errors.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			return &url.Error{Op: ue.Op, URL: u.Redacted(), Err: ue.Err}
		}
	}
	if err == nil {
		return errors.New("no response")
	}
	return err
}

// attemptTransport waits for the quota (a penalty, a nearly spent window,
// the shared rate limiter) before every attempt (retries count against
// TAPD's quota too), times the attempt, learns from TAPD's answer and logs it.
type attemptTransport struct {
	c    *Client
	next http.RoundTripper
}

type attemptKey struct{}

func (t *attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.c
	probe, epoch, err := c.awaitTurn(req.Context())
	if err != nil {
		return nil, err
	}
	var resp *http.Response
	requestID := ""
	defer func() {
		if resp != nil || probe {
			c.attempted(req.Context(), probe, epoch, resp, requestID)
		}
	}()
	if l := c.limiter; l != nil {
		start := time.Now()
		if err := l.Wait(req.Context()); err != nil {
			return nil, err
		}
		c.waits.Add(int64(time.Since(start)))
	}
	attempt := 1
	if n, ok := req.Context().Value(attemptKey{}).(*atomic.Int32); ok {
		attempt = int(n.Add(1))
	}
	// The attempt's deadline covers sending it and reading its body, not
	// the waits above.
	ctx, cancel := context.WithTimeout(req.Context(), c.opts.Timeout)
	start := time.Now()
	resp, err = t.next.RoundTrip(req.WithContext(ctx))
	took := time.Since(start)
	status := 0
	if resp != nil {
		status = resp.StatusCode
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		requestID = c.noteAnswer(req.Context(), resp)
	} else {
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && req.Context().Err() == nil {
			err = fmt.Errorf("no answer within %v (tapd timeout): %w", c.opts.Timeout, err)
		}
	}
	u := *req.URL
	u.User = nil
	attrs := []any{"method", req.Method, "url", u.Redacted(), "status", status, "attempt", attempt, "took", took}
	if requestID != "" {
		attrs = append(attrs, "request_id", requestID)
	}
	if err != nil {
		attrs = append(attrs, "err", redactErr(err))
	}
	c.log.DebugContext(req.Context(), "tapd request", attrs...)
	if c.opts.Observe != nil {
		c.opts.Observe(status, attempt, took)
	}
	return resp, err
}

// cancelOnClose ends an attempt's deadline once its body is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
