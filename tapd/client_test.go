package tapd_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/tapd"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, tapdtest.Shanghai)

func newFake(t *testing.T) *tapdtest.Server {
	t.Helper()
	f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 2, RecordsPerDay: 5})
	t.Cleanup(f.Close)
	return f
}

// fastClient talks to the fake with millisecond backoffs and no quota.
func fastClient(t *testing.T, f *tapdtest.Server, mod ...func(*tapd.Options)) *tapd.Client {
	t.Helper()
	user, pw := f.Credentials()
	o := tapd.Options{BaseURL: f.URL, APIUser: user, APIPassword: pw, RequestsPerMinute: -1,
		RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond,
		MaxRetries: 4, Timeout: 5 * time.Second, Now: f.Now, WaitUntil: f.WaitUntil}
	for _, m := range mod {
		m(&o)
	}
	c, err := tapd.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func lastWeek(ws string) tapd.Query {
	return tapd.Query{WorkspaceID: ws, Limit: 200, Page: 1, Start: now.Add(-72 * time.Hour), End: now}
}

func TestDecodesTheReferenceExampleByteForByte(t *testing.T) {
	body, err := os.ReadFile("testdata/member_activity_log_example.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	c, _ := tapd.New(tapd.Options{BaseURL: srv.URL, RequestsPerMinute: -1})
	p, err := c.MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: "10158231"})
	if err != nil {
		t.Fatal(err)
	}
	if p.PerPage != 1 || p.TotalItems != 1009 || p.CurrentPage != 2 || len(p.Records) != 1 {
		t.Fatalf("page = %+v", p)
	}
	r := p.Records[0]
	want := tapd.Record{ID: "7480633", Action: "/iteration/create",
		Created: time.Date(2023, 10, 31, 16, 22, 44, 0, tapdtest.Shanghai), CreatedRaw: "2023-10-31 16:22:44", Creator: "啊啊啊",
		ProjectName: "西门子灌灌灌乐了路虎退货", OperateType: "新增", OperateObject: "迭代", Title: "batch_create_998",
		URL: "10074561/prong/iterations/card_view/1110074561001024855", IP: "1.1.1.1",
		UA: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/117.0.0.0 Safari/537.36"}
	if !r.Created.Equal(want.Created) || r.Created.Unix() != 1698740564 {
		t.Fatalf("created = %v (unix %d), want 2023-10-31 16:22:44 +08:00", r.Created, r.Created.Unix())
	}
	r.Created = want.Created
	if r != want {
		t.Fatalf("record =\n%+v\nwant\n%+v", r, want)
	}
	if p.OperateTypes["add"] != "新增" || p.OperateObjects["member_activity_log"] != "成员活动日志" || len(p.OperateObjects) != 13 {
		t.Fatalf("label maps = %v %v", p.OperateTypes, p.OperateObjects)
	}
}

func TestStringAndNumberTolerance(t *testing.T) {
	body := `{"status":"1","data":{"perPage":200,"totalItems":"3","currentPage":1,"records":[{"id":7480633,"created":"2026-11-01 00:00:00"}]},"info":"success"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }))
	defer srv.Close()
	c, _ := tapd.New(tapd.Options{BaseURL: srv.URL, RequestsPerMinute: -1})
	p, err := c.MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if p.PerPage != 200 || p.TotalItems != 3 || p.CurrentPage != 1 || p.Records[0].ID != "7480633" {
		t.Fatalf("page = %+v", p)
	}
}

func TestEveryFaultRecovers(t *testing.T) {
	f := newFake(t)
	c := fastClient(t, f)
	ws := f.Projects()[0].ID
	for _, fault := range append(tapdtest.AllFaults, tapdtest.FaultRateLimit) {
		t.Run(string(fault), func(t *testing.T) {
			f.ResetRequests()
			f.FailNext(fault, 2)
			p, err := c.MemberActivityLog(context.Background(), lastWeek(ws))
			if err != nil {
				t.Fatalf("after 2 %s faults: %v", fault, err)
			}
			if p.TotalItems == 0 || len(p.Records) == 0 {
				t.Fatalf("empty page after recovery: %+v", p)
			}
			if n := len(f.Requests()); n < 3 {
				t.Fatalf("%d requests, want at least 3 (2 faults + 1 success)", n)
			}
		})
	}
}

func TestFaultsThatOutlastRetriesAreTyped(t *testing.T) {
	for fault, kind := range map[tapdtest.Fault]error{
		tapdtest.Fault500: tapd.ErrServer, tapdtest.Fault502HTML: tapd.ErrServer, tapdtest.Fault503: tapd.ErrServer,
		tapdtest.FaultTruncated: tapd.ErrMalformed, tapdtest.FaultReset: tapd.ErrServer,
	} {
		t.Run(string(fault), func(t *testing.T) {
			f := newFake(t)
			c := fastClient(t, f, func(o *tapd.Options) { o.MaxRetries = 2 })
			f.FailNext(fault, 100)
			_, err := c.MemberActivityLog(context.Background(), lastWeek(f.Projects()[0].ID))
			if !errors.Is(err, kind) || !tapd.Retryable(err) {
				t.Fatalf("err = %v, want %v", err, kind)
			}
			// 1 + 2 retries; Go's transport may re-send a GET once more by
			// itself when a reused connection is reset.
			if n := len(f.Requests()); n < 3 || n > 4 {
				t.Fatalf("%d requests, want 3 (1 + 2 retries)", n)
			}
		})
	}
	f := newFake(t)
	c := fastClient(t, f, func(o *tapd.Options) { o.MaxRetries = 2 })
	ws := f.Projects()[0].ID
	t.Run("html page names its first bytes", func(t *testing.T) {
		f.FailNext(tapdtest.Fault502HTML, 3)
		_, err := c.MemberActivityLog(context.Background(), lastWeek(ws))
		if err == nil || !strings.Contains(err.Error(), "502 Bad Gateway") {
			t.Fatalf("err = %v, want the HTML's first bytes", err)
		}
	})
}

func TestClientErrorsAreNotRetried(t *testing.T) {
	f := newFake(t)
	ws := f.Projects()[0].ID
	cases := []struct {
		name  string
		c     *tapd.Client
		q     tapd.Query
		kind  error
		words string
	}{
		{"unknown workspace", fastClient(t, f), lastWeek("1010480"), tapd.ErrNotFound, "workspace 1010480 not existed"},
		{"bad password", fastClient(t, f, func(o *tapd.Options) { o.APIPassword = "wrong" }), lastWeek(ws), tapd.ErrAuth, "TAPD_MIRROR_TAPD_API_USER"},
		{"bad token", fastClient(t, f, func(o *tapd.Options) { o.APIUser, o.APIPassword, o.AccessToken = "", "", "nope" }), lastWeek(ws), tapd.ErrAuth, "access token provided is invalid"},
		{"two months", fastClient(t, f), tapd.Query{WorkspaceID: ws, Start: now.AddDate(0, -1, 0), End: now}, tapd.ErrParam, "不能跨月"},
		{"beyond half year", fastClient(t, f), tapd.Query{WorkspaceID: ws, Start: now.AddDate(0, -7, 0), End: now.AddDate(0, -7, 1)}, tapd.ErrBeyondHorizon, "半年"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.ResetRequests()
			_, err := tc.c.MemberActivityLog(context.Background(), tc.q)
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.words) || tapd.Retryable(err) {
				t.Fatalf("err = %v; want %v mentioning %q", err, tc.kind, tc.words)
			}
			if n := len(f.Requests()); n != 1 {
				t.Fatalf("%d requests, want 1 (no retry)", n)
			}
		})
	}
}

func TestHelloWorldIsABaseURLError(t *testing.T) {
	f := newFake(t)
	for name, c := range map[string]*tapd.Client{
		"with credentials":    fastClient(t, f, func(o *tapd.Options) { o.BaseURL = f.URL + "/api" }),
		"without credentials": fastClient(t, f, func(o *tapd.Options) { o.BaseURL, o.APIUser, o.APIPassword = f.URL+"/api", "", "" }),
	} {
		t.Run(name, func(t *testing.T) {
			f.ResetRequests()
			for _, call := range []func() error{
				func() error {
					_, err := c.MemberActivityLog(context.Background(), lastWeek(f.Projects()[0].ID))
					return err
				},
				func() error { _, err := c.Projects(context.Background(), f.CompanyID()); return err },
			} {
				err := call()
				if !errors.Is(err, tapd.ErrBaseURL) || tapd.Retryable(err) || !strings.Contains(err.Error(), "tapd.base_url") ||
					!strings.Contains(err.Error(), "Hello world") {
					t.Fatalf("err = %v, want a non-retryable ErrBaseURL naming tapd.base_url and quoting the greeting", err)
				}
			}
			if n := len(f.Requests()); n != 2 {
				t.Fatalf("%d requests for 2 calls, want 2 (no retry)", n)
			}
		})
	}
}

func TestCancellationStopsRetriesAtOnce(t *testing.T) {
	f := newFake(t)
	c := fastClient(t, f, func(o *tapd.Options) { o.RetryWaitMin, o.RetryWaitMax, o.MaxRetries = time.Hour, time.Hour, 10 })
	f.FailNext(tapdtest.Fault500, 100)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for len(f.Requests()) == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err := c.MemberActivityLog(ctx, lastWeek(f.Projects()[0].ID)) // would wait an hour if cancel were ignored
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := len(f.Requests()); n != 1 {
		t.Fatalf("%d requests after cancel, want 1", n)
	}
}

func TestCredentialsNeverLogged(t *testing.T) {
	f := newFake(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logs, &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	user, pw := f.Credentials()
	basic := fastClient(t, f, func(o *tapd.Options) {
		o.Logger = logger
		o.BaseURL = strings.Replace(f.URL, "://", "://"+user+":"+pw+"@", 1)
	})
	bearer := fastClient(t, f, func(o *tapd.Options) { o.Logger = logger; o.APIUser, o.APIPassword, o.AccessToken = "", "", f.Token() })
	wrong := fastClient(t, f, func(o *tapd.Options) { o.Logger = logger; o.APIPassword = "wrong-pw-123" })
	tokens := &sentTokens{next: http.DefaultTransport}
	id, secret := f.AppCredentials()
	app := fastClient(t, f, func(o *tapd.Options) {
		o.Logger, o.Transport = logger, tokens
		o.APIUser, o.APIPassword, o.ClientID, o.ClientSecret = "", "", id, secret
	})
	f.FailNext(tapdtest.Fault500, 1)
	for _, c := range []*tapd.Client{basic, bearer, wrong, app} {
		c.MemberActivityLog(context.Background(), lastWeek(f.Projects()[0].ID))
	}
	f.RevokeTokens() // the app's next call is refused, renews its token and logs so
	app.MemberActivityLog(context.Background(), lastWeek(f.Projects()[0].ID))
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, "tapd request") || !strings.Contains(out, "attempt=2") || !strings.Contains(out, "renewing") {
		t.Fatalf("expected debug attempt logs and a renewal, got:\n%s", out)
	}
	secrets := []string{pw, f.Token(), "wrong-pw-123", base64.StdEncoding.EncodeToString([]byte(user + ":" + pw)),
		secret, base64.StdEncoding.EncodeToString([]byte(id + ":" + secret))}
	if sent := tokens.all(); len(sent) != 2 {
		t.Fatalf("the app sent tokens %d, want 2 (before and after revocation)", len(sent))
	} else {
		secrets = append(secrets, sent...)
	}
	for _, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Fatalf("secret %q leaked into logs:\n%s", secret, out)
		}
	}
}

// sentTokens records the distinct Bearer tokens a client sends.
type sentTokens struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (s *sentTokens) RoundTrip(req *http.Request) (*http.Response, error) {
	if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
		s.mu.Lock()
		if !slices.Contains(s.seen, tok) {
			s.seen = append(s.seen, tok)
		}
		s.mu.Unlock()
	}
	return s.next.RoundTrip(req)
}

func (s *sentTokens) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestLimiterKeepsBurstWithinQuota(t *testing.T) {
	burst := func(c *tapd.Client, f *tapdtest.Server) (rejected int) {
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: f.Projects()[0].ID, Limit: 1, Start: now.Add(-time.Hour), End: now})
			}()
		}
		wg.Wait()
		for _, r := range f.Requests() {
			if r.Status == http.StatusTooManyRequests {
				rejected++
			}
		}
		return rejected
	}
	// The fake allows 10 requests per second; 240/min is 4/s with a burst of 4,
	// so any one-second span holds at most 8 (9 at its edges) of the client's requests.
	f := newFake(t)
	f.SetRateLimit(10, time.Second, false)
	limited := fastClient(t, f, func(o *tapd.Options) { o.RequestsPerMinute = 240; o.MaxRetries = 0 })
	if n := burst(limited, f); n != 0 {
		t.Fatalf("limited client got %d 429s", n)
	}
	if limited.LimiterWait() == 0 {
		t.Fatal("limiter never waited")
	}
	// Control: without the limiter the same burst does hit the quota.
	g := newFake(t)
	g.SetRateLimit(10, time.Second, false)
	if n := burst(fastClient(t, g, func(o *tapd.Options) { o.MaxRetries = 0 }), g); n == 0 {
		t.Fatal("unlimited burst was never rejected; the test proves nothing")
	}
}

func TestProjectsLeaveOutTheCompanyByItsID(t *testing.T) {
	for _, capture := range []bool{false, true} {
		t.Run(fmt.Sprintf("capture=%v", capture), func(t *testing.T) {
			f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 1, RecordsPerDay: 1, CaptureProjectList: capture})
			t.Cleanup(f.Close)
			closed := f.Projects()[1].ID
			f.SetProjectStatus(closed, "closed")
			ps, err := fastClient(t, f).Projects(context.Background(), f.CompanyID())
			if err != nil {
				t.Fatal(err)
			}
			if len(ps) != len(f.Projects()) {
				t.Fatalf("projects = %+v, want the %d projects without the company", ps, len(f.Projects()))
			}
			for i, p := range ps {
				want := f.Projects()[i]
				wantStatus := "normal"
				if p.ID == closed {
					wantStatus = "closed"
				}
				if p.ID != want.ID || p.Name != want.Name || p.Status != wantStatus {
					t.Fatalf("project %d = %+v, want %+v status %s", i, p, want, wantStatus)
				}
				if capture && p.Category != "" {
					t.Fatalf("project %d has category %q, the capture has none", i, p.Category)
				}
			}
			if _, err := fastClient(t, f).Projects(context.Background(), "999"); !errors.Is(err, tapd.ErrNotFound) {
				t.Fatalf("unknown company err = %v", err)
			}
		})
	}
}

// TestPHPShapes: what PHP's json_encode makes of empty and mixed values
// is read as what it means.
func TestPHPShapes(t *testing.T) {
	const rec = `{"id":7480633,"created":"2026-11-01 00:00:00","title":12345,"operate_type":"新增","extra_field":{"a":1}}`
	cases := []struct {
		name, data     string
		total, records int
		wantTypes      int
		firstTitle     string
	}{
		{"data []", `[]`, 0, 0, 0, ""},
		{"data {}", `{}`, 0, 0, 0, ""},
		{"records null", `{"perPage":"20","totalItems":0,"currentPage":"1","records":null,"operate_types":[],"operate_objects":[]}`, 0, 0, 0, ""},
		{"records {}", `{"perPage":"20","totalItems":"0","currentPage":"1","records":{},"operate_types":{},"operate_objects":null}`, 0, 0, 0, ""},
		{"records absent", `{"perPage":"20","totalItems":0}`, 0, 0, 0, ""},
		{"records as an object keyed by index", `{"totalItems":2.0,"records":{"1":` + rec + `,"0":` + strings.Replace(rec, "12345", `"first"`, 1) + `}}`, 2, 2, 0, "first"},
		{"numbers as numbers, unknown fields", `{"perPage":200,"totalItems":"1","currentPage":1,"records":[` + rec + `],"operate_types":{"add":"新增"},"unknown":[1,2]}`, 1, 1, 1, "12345"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"status":1,"data":` + tc.data + `,"info":"success","meta":{"request_id":"r1"}}`
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }))
			defer srv.Close()
			c, _ := tapd.New(tapd.Options{BaseURL: srv.URL, RequestsPerMinute: -1, MaxRetries: -1})
			p, err := c.MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: "1"})
			if err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if p.TotalItems != tc.total || len(p.Records) != tc.records || len(p.OperateTypes) != tc.wantTypes {
				t.Fatalf("page = %+v", p)
			}
			if tc.records > 0 && p.Records[0].Title != tc.firstTitle {
				t.Fatalf("first title %q, want %q", p.Records[0].Title, tc.firstTitle)
			}
		})
	}
	t.Run("data null or a number is malformed", func(t *testing.T) {
		for _, data := range []string{`null`, `42`, `[1,2]`} {
			body := `{"status":1,"data":` + data + `,"info":"success"}`
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }))
			c, _ := tapd.New(tapd.Options{BaseURL: srv.URL, RequestsPerMinute: -1, MaxRetries: -1})
			_, err := c.MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: "1"})
			srv.Close()
			if !errors.Is(err, tapd.ErrMalformed) {
				t.Fatalf("data %s: err = %v, want ErrMalformed", data, err)
			}
		}
	})
	t.Run("projects", func(t *testing.T) {
		for data, want := range map[string]int{
			`[]`: 0, `{}`: 0, `null`: 0,
			`{"0":{"Workspace":{"id":20,"name":"a","member_count":3}},"2":{"Workspace":{"id":"21","name":7}}}`: 2,
		} {
			body := `{"status":"1","data":` + data + `,"info":"success"}`
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }))
			c, _ := tapd.New(tapd.Options{BaseURL: srv.URL, RequestsPerMinute: -1, MaxRetries: -1})
			ps, err := c.Projects(context.Background(), "1")
			srv.Close()
			if err != nil || len(ps) != want || (want == 2 && (ps[0].ID != "20" || ps[1].Name != "7")) {
				t.Fatalf("data %s: projects %+v, err %v", data, ps, err)
			}
		}
	})
	t.Run("the fake's shapes", func(t *testing.T) {
		for _, shape := range []tapdtest.PHPEmpty{tapdtest.EmptyDataList, tapdtest.EmptyDataObject, tapdtest.EmptyRecordsNull, tapdtest.EmptyRecordsObject} {
			f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 1, RecordsPerDay: 1, PHPEmpty: shape})
			p, err := fastClient(t, f).MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: f.Projects()[0].ID,
				Start: now.Add(-time.Hour), End: now.Add(-time.Hour)})
			f.Close()
			if err != nil || p.TotalItems != 0 || len(p.Records) != 0 {
				t.Fatalf("%s: page %+v, err %v", shape, p, err)
			}
		}
	})
}

func TestRequestIDInErrors(t *testing.T) {
	f := newFake(t)
	c := fastClient(t, f, func(o *tapd.Options) { o.MaxRetries = 1 })
	for name, call := range map[string]func() error{
		"404": func() error { _, err := c.MemberActivityLog(context.Background(), lastWeek("1010480")); return err },
		"500": func() error {
			f.FailNext(tapdtest.Fault500, 2)
			_, err := c.MemberActivityLog(context.Background(), lastWeek(f.Projects()[0].ID))
			return err
		},
	} {
		f.ResetRequests()
		err := call()
		reqs := f.Requests()
		last := reqs[len(reqs)-1].RequestID
		if err == nil || last == "" || !strings.Contains(err.Error(), "request_id "+last) {
			t.Fatalf("%s: err = %v, want TAPD's request_id %q in it", name, err, last)
		}
	}
}

func TestLocationIsTheConfiguredZone(t *testing.T) {
	c, err := tapd.New(tapd.Options{RequestsPerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Location(); got == nil || time.Date(2026, 1, 1, 0, 0, 0, 0, got).UTC().Hour() != 16 {
		t.Fatalf("default Location %v is not UTC+8", got)
	}
	utc3 := time.FixedZone("UTC+3", 3*3600)
	if c, _ := tapd.New(tapd.Options{Location: utc3, RequestsPerMinute: -1}); c.Location() != utc3 {
		t.Fatalf("Location %v, want the configured zone", c.Location())
	}
}

func TestBeyondHorizonIsTyped(t *testing.T) {
	f := newFake(t)
	c := fastClient(t, f)
	ws := f.Projects()[0].ID
	_, err := c.MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: ws, Start: now.AddDate(0, -7, 0), End: now.AddDate(0, -7, 1)})
	if !errors.Is(err, tapd.ErrBeyondHorizon) || !errors.Is(err, tapd.ErrParam) || tapd.Retryable(err) {
		t.Fatalf("err = %v, want ErrBeyondHorizon (an ErrParam, not retryable)", err)
	}
	var te *tapd.Error
	if !errors.As(err, &te) || te.HTTPStatus != 422 || !strings.Contains(te.Info, "半年") {
		t.Fatalf("err = %#v, want TAPD's 422 info", err)
	}
	// Another 422 is not mistaken for the horizon.
	_, err = c.MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: ws, Start: now.AddDate(0, -1, 0), End: now})
	if !errors.Is(err, tapd.ErrParam) || errors.Is(err, tapd.ErrBeyondHorizon) {
		t.Fatalf("two-month window err = %v, want ErrParam only", err)
	}
}

func TestPageCarriesWhatTAPDReturned(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 2, Now: now, Months: 1, RecordsPerDay: 100, MaxPerPage: 100})
	t.Cleanup(f.Close)
	c := fastClient(t, f)
	q := tapd.Query{WorkspaceID: f.Projects()[0].ID, Limit: 200, Page: 2, Start: now.AddDate(0, 0, -10), End: now}
	p, err := c.MemberActivityLog(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	q.Limit, q.Page = 1, 1
	one, err := c.MemberActivityLog(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if p.PerPage != 100 || len(p.Records) != 100 || p.CurrentPage != 2 || p.TotalItems != one.TotalItems || p.TotalItems < 900 {
		t.Fatalf("asked 200 per page: PerPage %d, %d records, CurrentPage %d, TotalItems %d (limit 1 says %d)",
			p.PerPage, len(p.Records), p.CurrentPage, p.TotalItems, one.TotalItems)
	}
}

func TestHostileBytesDecode(t *testing.T) {
	f := newFake(t)
	ws := f.Projects()[0].ID
	when := now.Add(-time.Hour)
	want := map[string]string{
		f.AddRecord(ws, when, func(r *tapdtest.Record) { r.Title = "a\x00b" }).ID:           "a\x00b",
		f.AddRecord(ws, when, func(r *tapdtest.Record) { r.TitleJSON = `x\ud800y` }).ID:     "x\ufffdy",
		f.AddRecord(ws, when, func(r *tapdtest.Record) { r.TitleJSON = "caf\xe9!" }).ID:     "caf\ufffd!",
		f.AddRecord(ws, when, func(r *tapdtest.Record) { r.TitleJSON = `\ud83d\ude80` }).ID: "🚀",
	}
	p, err := fastClient(t, f).MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: ws, Limit: 200, Start: when, End: when})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range p.Records {
		if _, ok := want[r.ID]; ok {
			got[r.ID] = r.Title
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d of the %d planted records", len(got), len(want))
	}
	for id, title := range want {
		if got[id] != title {
			t.Errorf("record %s title %q, want %q", id, got[id], title)
		}
	}
}

func TestQuotaFrom429LowersTheLimiter(t *testing.T) {
	f := newFake(t) // its 429 says "max request rates is 1800req/10min": 180 a minute
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logs, &mu}, nil))
	ws := f.Projects()[0].ID
	for _, tc := range []struct {
		configured int
		want       float64
	}{{600, 180}, {179, 179}, {-1, 0}} {
		c := fastClient(t, f, func(o *tapd.Options) { o.RequestsPerMinute, o.Logger = tc.configured, logger })
		if tc.configured > 0 && c.RateLimit() != float64(tc.configured) {
			t.Fatalf("RateLimit %v before any 429, want %d", c.RateLimit(), tc.configured)
		}
		for range 2 {
			f.RateLimitStorm(1, false)
			if _, err := c.MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: ws, Limit: 1}); err != nil {
				t.Fatal(err)
			}
		}
		if got := c.RateLimit(); got != tc.want {
			t.Fatalf("configured %d: RateLimit %v after TAPD's 429, want %v", tc.configured, got, tc.want)
		}
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	user, _ := f.Credentials()
	if n := strings.Count(out, "lowering it"); n != 1 || !strings.Contains(out, "quota_per_minute=180") || strings.Contains(out, "account "+user) {
		t.Fatalf("want one warning with the quota and without the account name, got:\n%s", out)
	}
}
