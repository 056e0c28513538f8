package tapdtest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"

	"github.com/tapd-mirror/tapd-mirror/tapd"
)

// Replay serves a directory recorded by tapd.Recorder (`doctor --record
// DIR`), so a user's exchanges with the real TAPD can be played back to the
// client. Each recorded answer is served once, in the order recorded, to
// the first request that matches it: the same method, path and query, or
// failing that the same query but for start_time and end_time (a replay
// runs at another minute than the recording). A request nothing matches
// is answered 404 "not in the recording". Credentials are not checked:
// they were removed from the recording.
type Replay struct {
	*httptest.Server

	mu        sync.Mutex
	exchanges []tapd.Exchange
	served    []bool
	unmatched []string
}

// NewReplay starts a server replaying dir.
func NewReplay(dir string) (*Replay, error) {
	xs, err := tapd.ReadRecording(dir)
	if err != nil {
		return nil, err
	}
	r := &Replay{exchanges: xs, served: make([]bool, len(xs))}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	return r, nil
}

// Unmatched lists the requests the recording had no answer for.
func (r *Replay) Unmatched() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.unmatched...)
}

// Unserved counts the recorded answers no request asked for yet.
func (r *Replay) Unserved() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.served {
		if !s {
			n++
		}
	}
	return n
}

func (r *Replay) serve(w http.ResponseWriter, req *http.Request) {
	req.ParseForm() //nolint:errcheck // a bad form matches nothing
	x, ok := r.take(req)
	if !ok {
		writeTAPD(&statusRecorder{ResponseWriter: w}, http.StatusNotFound, 404, "", fmt.Sprintf("%s %s is not in the recording", req.Method, req.URL.RequestURI()))
		return
	}
	body, err := x.Body()
	if err != nil || x.Status == 0 {
		// The recorded attempt got no answer (a reset, a timeout): cut this one too.
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	for k, vs := range x.ResponseHeaders {
		if k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(x.Status)
	w.Write(body)
}

// take finds and marks the recorded exchange answering req.
func (r *Replay) take(req *http.Request) (tapd.Exchange, bool) {
	q := withoutTimes(req.URL.Query())
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, exact := range []bool{true, false} {
		for i, x := range r.exchanges {
			if r.served[i] || x.Method != req.Method {
				continue
			}
			u, err := url.Parse(x.URL)
			if err != nil || u.Path != req.URL.Path {
				continue
			}
			xq := u.Query()
			if exact && xq.Encode() != req.URL.Query().Encode() || !exact && withoutTimes(xq).Encode() != q.Encode() {
				continue
			}
			if x.RequestBody != "" { // a POST's form (request_token)
				if body, err := url.ParseQuery(x.RequestBody); err == nil && withoutTimes(body).Encode() != withoutTimes(req.PostForm).Encode() {
					continue
				}
			}
			r.served[i] = true
			return x, true
		}
	}
	r.unmatched = append(r.unmatched, req.Method+" "+req.URL.RequestURI())
	return tapd.Exchange{}, false
}

func withoutTimes(v url.Values) url.Values {
	out := cloneValues(v)
	out.Del("start_time")
	out.Del("end_time")
	return out
}
