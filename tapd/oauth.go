package tapd

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// tokenSource holds an OAuth app's access token: obtained with the
// client-credentials grant, renewed at 80 % of its lifetime by the client's
// clock, or at once when TAPD refuses it. However many calls need a token,
// only one request for it is in flight.
type tokenSource struct {
	c *Client

	mu       sync.Mutex
	token    string
	renewAt  time.Time
	lifetime time.Duration // of the current token, as TAPD announced it
	inflight *tokenCall
}

// tokenCall is one token request that several callers may wait for.
type tokenCall struct {
	done  chan struct{}
	token string
	err   error
}

// defaultTokenLifetime is TAPD's documented expires_in, for an answer without one.
const defaultTokenLifetime = 7200 * time.Second

// get returns a token that is not due for renewal, requesting one if needed.
func (ts *tokenSource) get(ctx context.Context) (string, error) {
	ts.mu.Lock()
	if ts.token != "" && ts.c.opts.Now().Before(ts.renewAt) {
		token := ts.token
		ts.mu.Unlock()
		return token, nil
	}
	call := ts.inflight
	if call == nil {
		call = &tokenCall{done: make(chan struct{})}
		ts.inflight = call
		// Not bound to this caller's context: others may be waiting for it.
		go ts.fetch(context.WithoutCancel(ctx), call)
	}
	ts.mu.Unlock()
	select {
	case <-call.done:
		return call.token, call.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (ts *tokenSource) fetch(ctx context.Context, call *tokenCall) {
	asked := ts.c.opts.Now()
	token, lifetime, err := ts.c.requestToken(ctx)
	ts.mu.Lock()
	if err == nil {
		// Counted from when it was asked for, so a slow answer renews early, not late.
		ts.token, ts.renewAt, ts.lifetime = token, asked.Add(lifetime*8/10), lifetime
	}
	ts.inflight = nil
	ts.mu.Unlock()
	call.token, call.err = token, err
	close(call.done)
	if err == nil {
		ts.c.log.DebugContext(ctx, "TAPD access token obtained", "expires_in", lifetime)
	}
}

// invalidate drops token if it is still the current one, so that the next
// get renews it; a token already replaced by another caller is left alone.
func (ts *tokenSource) invalidate(token string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.token == token {
		ts.token = ""
	}
}

// wireToken is data of POST /tokens/request_token.
type wireToken struct {
	AccessToken string  `json:"access_token"`
	ExpiresIn   flexInt `json:"expires_in"`
	TokenType   string  `json:"token_type"`
}

// requestToken asks TAPD for an access token with the client-credentials grant.
func (c *Client) requestToken(ctx context.Context) (string, time.Duration, error) {
	const op = "request_token"
	u := *c.base
	u.Path += "/tokens/request_token"
	_, typed, err := c.do(ctx, call{op: op, method: http.MethodPost, url: u.String(),
		form:       url.Values{"grant_type": {"client_credentials"}},
		auth:       func(req *retryablehttp.Request) { req.SetBasicAuth(c.opts.ClientID, c.opts.ClientSecret) },
		newData:    func() any { return new(wireToken) },
		secretBody: true})
	if err != nil {
		var te *Error
		if errors.As(err, &te) && errors.Is(te.Kind, ErrAuth) {
			te.Hint = "check the TAPD app's client id and secret"
		}
		return "", 0, err
	}
	w, _ := typed.(*wireToken)
	if w == nil || w.AccessToken == "" {
		return "", 0, &Error{Kind: ErrMalformed, Op: op, HTTPStatus: http.StatusOK, Info: "the answer has no access_token",
			Hint: "check tapd.base_url points at the TAPD API root"}
	}
	lifetime := time.Duration(w.ExpiresIn) * time.Second
	if lifetime <= 0 {
		lifetime = defaultTokenLifetime
	}
	return w.AccessToken, lifetime, nil
}
