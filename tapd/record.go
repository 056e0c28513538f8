package tapd

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Exchange is one HTTP request to TAPD and its raw answer, as a Recorder
// saves it (one JSON file per exchange, numbered in the order sent), with
// credentials and tokens removed.
type Exchange struct {
	Seq    int       `json:"seq"`
	At     time.Time `json:"at"`
	Method string    `json:"method"`
	// URL is the path and query, without the host (and so without userinfo).
	URL             string      `json:"url"`
	RequestHeaders  http.Header `json:"request_headers,omitempty"`
	RequestBody     string      `json:"request_body,omitempty"`
	Status          int         `json:"status"` // 0: no answer (Error says why)
	ResponseHeaders http.Header `json:"response_headers,omitempty"`
	ResponseBody    string      `json:"response_body"`
	// BodyBase64 marks a body that is not UTF-8, saved base64-encoded.
	BodyBase64 bool   `json:"response_body_base64,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Removed stands in for a credential or token in a recording.
const Removed = "[removed]"

// Recorder is an http.RoundTripper that counts every request sent to TAPD,
// keeps the quota TAPD announces in X-RateLimit-* headers, and, with a
// directory, saves each exchange there. Put it under the client
// (Options.Transport): every attempt, retries included, goes through it.
type Recorder struct {
	next    http.RoundTripper
	dir     string
	secrets []string

	mu        sync.Mutex
	requests  int
	refused   int    // 429 answers
	limit     string // last X-RateLimit-Limit seen
	remaining string // last X-RateLimit-Remaining seen
	err       error  // first failure to save an exchange
}

// NewRecorder wraps next (nil: http.DefaultTransport). dir "" records
// nothing; otherwise it is created. secrets (passwords, tokens, user names)
// are replaced by Removed wherever they appear; Authorization headers and
// token and account fields (credentialFieldRE) are removed whatever they hold.
func NewRecorder(next http.RoundTripper, dir string, secrets ...string) (*Recorder, error) {
	if next == nil {
		next = http.DefaultTransport
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating the recording directory: %w", err)
		}
	}
	// Shorter strings would mask ordinary words; the fields and headers
	// holding credentials are removed whatever their length.
	kept := slices.DeleteFunc(slices.Clone(secrets), func(s string) bool { return len(s) < 4 })
	slices.SortFunc(kept, func(a, b string) int { return len(b) - len(a) }) // longest first: no partial masks
	return &Recorder{next: next, dir: dir, secrets: kept}, nil
}

// Requests counts the requests sent so far.
func (r *Recorder) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// RateLimitHeaders are the last X-RateLimit-Limit and -Remaining TAPD sent ("" if none).
func (r *Recorder) RateLimitHeaders() (limit, remaining string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.limit, r.remaining
}

// Refused is how many answers were 429s (TAPD's quota, or its penalty after one).
func (r *Recorder) Refused() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// Err is the first failure to save an exchange.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *Recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil && r.dir != "" {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	r.mu.Lock()
	r.requests++
	seq := r.requests
	r.mu.Unlock()
	at := time.Now()
	resp, err := r.next.RoundTrip(req)
	if resp != nil {
		r.mu.Lock()
		if v := resp.Header.Get("X-RateLimit-Limit"); v != "" {
			r.limit = v
		}
		if v := resp.Header.Get("X-RateLimit-Remaining"); v != "" {
			r.remaining = v
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			r.refused++
		}
		r.mu.Unlock()
	}
	if r.dir == "" {
		return resp, err
	}
	x := Exchange{Seq: seq, At: at, Method: req.Method, URL: r.scrub(req.URL.RequestURI()),
		RequestHeaders: r.headers(req.Header), RequestBody: r.scrub(string(reqBody))}
	if err != nil {
		x.Error = r.scrub(redactErr(err).Error())
	}
	if resp != nil {
		body, rerr := bufferBody(resp)
		x.Status, x.ResponseHeaders = resp.StatusCode, r.headers(resp.Header)
		if rerr != nil {
			x.Error = r.scrub(rerr.Error())
		}
		if utf8.Valid(body) {
			x.ResponseBody = r.scrub(string(body))
		} else {
			x.ResponseBody, x.BodyBase64 = base64Text(body), true
		}
	}
	r.save(x)
	return resp, err
}

// credentialFieldRE finds a token (request_token's answer) or an account
// name (testauth's) in a JSON body, whoever it belongs to.
var credentialFieldRE = regexp.MustCompile(`("(?:access_token|refresh_token|api_user|api_password|client_secret)"\s*:\s*)"[^"]*"`)

// accountRE finds the account name in TAPD's 429 text ("api account NAME!").
var accountRE = regexp.MustCompile(`(api account )[^!,\s"]+`)

// authValueRE finds an Authorization value quoted in a body (a gateway
// echoing the request).
var authValueRE = regexp.MustCompile(`(?i)\b(Basic|Bearer) [A-Za-z0-9+/=._~-]+`)

func (r *Recorder) scrub(s string) string {
	for _, secret := range r.secrets {
		s = strings.ReplaceAll(s, secret, Removed)
	}
	s = credentialFieldRE.ReplaceAllString(s, `${1}"`+Removed+`"`)
	s = authValueRE.ReplaceAllString(s, "${1} "+Removed)
	return accountRE.ReplaceAllString(s, "${1}"+Removed)
}

func (r *Recorder) headers(h http.Header) http.Header {
	out := http.Header{}
	for k, vs := range h {
		for _, v := range vs {
			switch http.CanonicalHeaderKey(k) {
			case "Authorization", "Cookie", "Set-Cookie":
				v = Removed
			default:
				v = r.scrub(v)
			}
			out.Add(k, v)
		}
	}
	return out
}

func (r *Recorder) save(x Exchange) {
	b, err := json.MarshalIndent(x, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(r.dir, fmt.Sprintf("%05d.json", x.Seq)), append(b, '\n'), 0o600)
	}
	if err != nil {
		r.mu.Lock()
		if r.err == nil {
			r.err = fmt.Errorf("saving TAPD exchange %d: %w", x.Seq, err)
		}
		r.mu.Unlock()
	}
}

// ReadRecording loads the exchanges a Recorder saved in dir, in the order
// they were sent.
func ReadRecording(dir string) ([]Exchange, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Exchange
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("reading recorded exchange: %w", err)
		}
		var x Exchange
		if err := json.Unmarshal(b, &x); err != nil {
			return nil, fmt.Errorf("recorded exchange %s: %w", filepath.Base(name), err)
		}
		out = append(out, x)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no recorded exchanges (*.json) in %s", dir)
	}
	slices.SortFunc(out, func(a, b Exchange) int { return a.Seq - b.Seq })
	return out, nil
}

// Body is the recorded response body's bytes.
func (x Exchange) Body() ([]byte, error) {
	if x.BodyBase64 {
		return base64Bytes(x.ResponseBody)
	}
	return []byte(x.ResponseBody), nil
}

func base64Text(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func base64Bytes(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
