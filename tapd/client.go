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
	RateLimitWait     time.Duration // first wait after a 429 without Retry-After; default 10s
	MaxRetryAfter     time.Duration // cap on a server-sent Retry-After; default 2m

	// Now is the client's clock, for token renewal; default time.Now.
	Now func() time.Time

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
	log     *slog.Logger
	waits   atomic.Int64 // nanoseconds spent waiting on the limiter
	oauth   *tokenSource // nil unless ClientID is set

	rateMu    sync.Mutex
	perMinute float64 // the limiter's rate in requests per minute
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
	def(&o.RateLimitWait, 10*time.Second)
	def(&o.MaxRetryAfter, 2*time.Minute)
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
	rc.HTTPClient = &http.Client{Timeout: o.Timeout, Transport: &attemptTransport{c: c, next: inner}}
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
			w.Records = nil
		}
	}
	if w.Records == nil {
		return Page{}, &Error{Kind: ErrMalformed, Op: op, Info: "data is not a page of records: " + snippet(data),
			Hint: "check tapd.base_url points at the TAPD API root"}
	}
	return c.decodePage(op, w)
}

func (c *Client) decodePage(op string, w *wirePage) (Page, error) {
	p := Page{PerPage: int(w.PerPage), TotalItems: int(w.TotalItems), CurrentPage: int(w.CurrentPage),
		OperateTypes: w.OperateTypes, OperateObjects: w.OperateObjects, Records: make([]Record, 0, len(*w.Records))}
	for _, r := range *w.Records {
		created, err := time.ParseInLocation(TimeLayout, r.Created, c.opts.Location)
		if err != nil || r.ID == "" {
			return Page{}, &Error{Kind: ErrMalformed, Op: op, Info: fmt.Sprintf("record %q has created %q, want %q", r.ID, r.Created, TimeLayout)}
		}
		p.Records = append(p.Records, Record{ID: string(r.ID), Action: r.Action, Created: created, CreatedRaw: r.Created, Creator: r.Creator,
			ProjectName: r.ProjectName, OperateType: r.OperateType, OperateObject: r.OperateObject,
			Title: r.Title, URL: r.URL, IP: r.IP, UA: r.UA})
	}
	return p, nil
}

// Projects lists the projects of a company (entries of category
// "organization" are the company itself and are left out).
func (c *Client) Projects(ctx context.Context, companyID string) ([]Project, error) {
	op := "projects of company " + companyID
	data, _, err := c.get(ctx, op, "/workspaces/projects", url.Values{"company_id": {companyID}}, nil)
	if err != nil {
		return nil, err
	}
	var entries []wireProjectEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, &Error{Kind: ErrMalformed, Op: op, Info: "data is not a list of workspaces: " + snippet(data)}
	}
	out := []Project{}
	for _, e := range entries {
		if e.Workspace == nil || e.Workspace.ID == "" {
			return nil, &Error{Kind: ErrMalformed, Op: op, Info: "an entry has no Workspace.id: " + snippet(data)}
		}
		if e.Workspace.Category == "organization" {
			continue
		}
		out = append(out, Project{ID: string(e.Workspace.ID), Name: e.Workspace.Name,
			Status: e.Workspace.Status, Category: e.Workspace.Category})
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
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, nil, fmt.Errorf("%s: %w", cl.op, ctxErr)
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
	info := env.Info
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
	e := &Error{Op: op, HTTPStatus: resp.StatusCode, Info: info}
	switch {
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

// checkRetry retries network errors, 429, 5xx and broken 2xx bodies; never
// other 4xx; and stops at once when the context ends.
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
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true, nil
	}
	return false, nil
}

// backoff honours a Retry-After (capped); after a 429 without one it waits
// seconds, growing; otherwise exponential from RetryWaitMin. All jittered.
func (c *Client) backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil {
		if d, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			return min(d, c.opts.MaxRetryAfter)
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			lo, hi = c.opts.RateLimitWait, max(hi, c.opts.RateLimitWait)
		}
	}
	d := lo << min(attempt, 16)
	if d <= 0 || d > hi {
		d = hi
	}
	return d/2 + rand.N(d/2+1) // jitter: between half and all of d
}

func retryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
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

// attemptTransport waits for the shared rate limiter before every attempt
// (retries count against TAPD's quota too) and logs each attempt.
type attemptTransport struct {
	c    *Client
	next http.RoundTripper
}

type attemptKey struct{}

func (t *attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if l := t.c.limiter; l != nil {
		start := time.Now()
		if err := l.Wait(req.Context()); err != nil {
			return nil, err
		}
		t.c.waits.Add(int64(time.Since(start)))
	}
	attempt := 1
	if n, ok := req.Context().Value(attemptKey{}).(*atomic.Int32); ok {
		attempt = int(n.Add(1))
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	took := time.Since(start)
	status := 0
	if resp != nil {
		status = resp.StatusCode
		t.c.noteQuota(req.Context(), resp)
	}
	u := *req.URL
	u.User = nil
	attrs := []any{"method", req.Method, "url", u.Redacted(), "status", status, "attempt", attempt, "took", took}
	if err != nil {
		attrs = append(attrs, "err", redactErr(err))
	}
	t.c.log.DebugContext(req.Context(), "tapd request", attrs...)
	if t.c.opts.Observe != nil {
		t.c.opts.Observe(status, attempt, took)
	}
	return resp, err
}
