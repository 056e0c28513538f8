package tapd_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/tapd"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// appClient talks to the fake as its OAuth app.
func appClient(t *testing.T, f *tapdtest.Server, mod ...func(*tapd.Options)) *tapd.Client {
	t.Helper()
	id, secret := f.AppCredentials()
	return fastClient(t, f, append([]func(*tapd.Options){func(o *tapd.Options) {
		o.APIUser, o.APIPassword, o.ClientID, o.ClientSecret = "", "", id, secret
	}}, mod...)...)
}

// refusals counts activity-log answers that refused the token.
func refusals(f *tapdtest.Server) int {
	n := 0
	for _, r := range f.Requests() {
		if r.Path == "/workspaces/member_activity_log" && (r.Status == 401 || r.Status == 422) {
			n++
		}
	}
	return n
}

func TestExactlyOneAuthMethod(t *testing.T) {
	for name, o := range map[string]tapd.Options{
		"user and token":     {APIUser: "u", APIPassword: "p", AccessToken: "t"},
		"user and app":       {APIUser: "u", APIPassword: "p", ClientID: "c", ClientSecret: "s"},
		"token and app":      {AccessToken: "t", ClientID: "c", ClientSecret: "s"},
		"password and token": {APIPassword: "p", AccessToken: "t"},
		"app without secret": {ClientID: "c"},
	} {
		if _, err := tapd.New(o); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	for name, o := range map[string]tapd.Options{
		"none": {}, "user": {APIUser: "u", APIPassword: "p"}, "token": {AccessToken: "t"}, "app": {ClientID: "c", ClientSecret: "s"},
	} {
		if _, err := tapd.New(o); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestTokenRenewedBeforeExpiry(t *testing.T) {
	f := newFake(t)
	c := appClient(t, f, func(o *tapd.Options) { o.Now = f.Now }) // the client's clock agrees with TAPD's
	ws := f.Projects()[0].ID
	// 120 calls 4 minutes apart: 476 minutes, about four lifetimes of a 120-minute token.
	for i := range 120 {
		if _, err := c.MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: ws, Limit: 1}); err != nil {
			t.Fatalf("call %d at +%d min: %v", i, i*4, err)
		}
		f.Advance(4 * time.Minute)
	}
	// Renewed at 80 % of 120 minutes: at 0, 96, 192, 288 and 384 (at 100 % it
	// would be 0, 120, 240, 360: four).
	if n := f.TokenRequests(); n != 5 {
		t.Fatalf("%d token requests, want 5", n)
	}
	if n := refusals(f); n != 0 {
		t.Fatalf("TAPD refused the token %d times; renewal came too late", n)
	}
}

func TestRefusedTokenRenewedOnceAndRetried(t *testing.T) {
	for _, status := range []int{422, 401} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 2, RecordsPerDay: 5, TokenRejectStatus: status})
			t.Cleanup(f.Close)
			// The client's clock is stuck, so only TAPD's refusal shows the token expired.
			c := appClient(t, f, func(o *tapd.Options) { o.Now = func() time.Time { return now } })
			ws := f.Projects()[0].ID
			for i := range 30 {
				if _, err := c.MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: ws, Limit: 1}); err != nil {
					t.Fatalf("call %d at +%d min: %v", i, i*10, err)
				}
				f.Advance(10 * time.Minute)
			}
			// Tokens at 0, 120 and 240 minutes; each expiry refused once.
			if n, r := f.TokenRequests(), refusals(f); n != 3 || r != 2 {
				t.Fatalf("%d token requests and %d refusals, want 3 and 2", n, r)
			}
		})
	}
}

// bogusBearer replaces the Bearer token of API calls, so TAPD refuses every one.
type bogusBearer struct{ next http.RoundTripper }

func (b bogusBearer) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasPrefix(req.Header.Get("Authorization"), "Bearer ") {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer bogus")
	}
	return b.next.RoundTrip(req)
}

func TestTokenRefusedTwiceIsErrAuth(t *testing.T) {
	f := newFake(t)
	c := appClient(t, f, func(o *tapd.Options) { o.Transport = bogusBearer{http.DefaultTransport} })
	_, err := c.MemberActivityLog(context.Background(), lastWeek(f.Projects()[0].ID))
	if !errors.Is(err, tapd.ErrAuth) || tapd.Retryable(err) || !strings.Contains(err.Error(), "client id") {
		t.Fatalf("err = %v, want ErrAuth naming the app's credentials", err)
	}
	if n, r := f.TokenRequests(), refusals(f); n != 2 || r != 2 {
		t.Fatalf("%d token requests and %d refused calls, want 2 and 2 (one renewal, one retry)", n, r)
	}
}

func TestTokenRequestFailures(t *testing.T) {
	f := newFake(t)
	ws := f.Projects()[0].ID
	t.Run("wrong secret", func(t *testing.T) {
		c := appClient(t, f, func(o *tapd.Options) { o.ClientSecret = "wrong-app-secret" })
		_, err := c.MemberActivityLog(context.Background(), lastWeek(ws))
		if !errors.Is(err, tapd.ErrAuth) || !strings.Contains(err.Error(), "client id and secret") || strings.Contains(err.Error(), "wrong-app-secret") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a fault is retried", func(t *testing.T) {
		f.ResetRequests()
		c := appClient(t, f)
		f.FailNext(tapdtest.Fault500, 1)
		if _, err := c.MemberActivityLog(context.Background(), lastWeek(ws)); err != nil {
			t.Fatal(err)
		}
		if r := f.Requests(); len(r) != 3 || r[0].Path != "/tokens/request_token" || r[1].Path != "/tokens/request_token" || r[1].Status != 200 {
			t.Fatalf("requests %+v, want a failed and a good token request, then the call", r)
		}
	})
	t.Run("a broken answer is not quoted", func(t *testing.T) {
		c := appClient(t, f, func(o *tapd.Options) { o.MaxRetries = 1 })
		f.FailNext(tapdtest.FaultTruncated, 2)
		_, err := c.MemberActivityLog(context.Background(), lastWeek(ws))
		if !errors.Is(err, tapd.ErrMalformed) || !strings.Contains(err.Error(), "not quoted") || strings.Contains(err.Error(), "截断") {
			t.Fatalf("err = %v, want ErrMalformed without the body", err)
		}
	})
}

func TestConcurrentCallersRenewOnce(t *testing.T) {
	f := newFake(t)
	f.SetLatency(20 * time.Millisecond) // callers pile up behind the token request
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	c := appClient(t, f, func(o *tapd.Options) { o.Now = func() time.Time { return time.Unix(0, clock.Load()) } })
	ws := f.Projects()[0].ID
	burst := func(phase string) {
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: ws, Limit: 1})
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", phase, err)
			}
		}
	}
	burst("first token")
	if n := f.TokenRequests(); n != 1 {
		t.Fatalf("first burst: %d token requests, want 1", n)
	}
	clock.Add(int64(100 * time.Minute)) // past 80 % of 7200 s by the client's clock
	burst("due for renewal")
	if n := f.TokenRequests(); n != 2 {
		t.Fatalf("renewal burst: %d token requests, want 2", n)
	}
	f.RevokeTokens()
	burst("refused")
	if n := f.TokenRequests(); n != 3 {
		t.Fatalf("after revocation: %d token requests, want 3", n)
	}
}
