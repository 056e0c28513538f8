package api_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
)

const (
	readTok  = "read-token-000000000000000000000000"
	writeTok = "write-token-00000000000000000000000"
	adminTok = "admin-token-00000000000000000000000"
)

func scopedTokens() []config.Token {
	return []config.Token{
		{Name: "reader", Token: readTok, Scope: config.ScopeRead},
		{Name: "writer", Token: writeTok, Scope: config.ScopeWrite},
		{Name: "ops", Token: adminTok, Scope: config.ScopeAdmin},
	}
}

var quiet = slog.New(slog.DiscardHandler)

// serve starts o's server over HTTP on 127.0.0.1.
func serve(t *testing.T, o api.Options) client {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet
	}
	srv := httptest.NewServer(newAPI(t, o).Handler())
	t.Cleanup(srv.Close)
	return client{t: t, base: srv.URL}
}

type response struct {
	status int
	header http.Header
	body   string
	env    struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
}

// send makes a request with the given headers; "Host" sets the Host header.
func (c client) send(method, path, body string, headers ...string) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, body: strings.TrimSpace(string(b))}
	json.Unmarshal(b, &r.env)
	return r
}

func bearer(tok string) []string {
	if tok == "" {
		return nil
	}
	return []string{"Authorization", "Bearer " + tok}
}

var jsonType = []string{"Content-Type", "application/json"}

func rows(t *testing.T, s *storage.Store) int64 {
	t.Helper()
	n, err := s.CountActivities(context.Background(), storage.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// refused checks that a request is refused with status, a non-zero code
// equal to it, a message holding want, and that it wrote nothing.
func refused(t *testing.T, s *storage.Store, c client, status int, want, method, path, body string, headers ...string) response {
	t.Helper()
	before := rows(t, s)
	tombs, _ := s.CountTombstones(context.Background())
	r := c.send(method, path, body, headers...)
	if r.status != status || r.env.Code != status || !strings.Contains(r.env.Message, want) || string(r.env.Data) != "null" {
		t.Errorf("%s %s %v\n got %d %s\nwant %d with message containing %q", method, path, headers, r.status, r.body, status, want)
	}
	after := rows(t, s)
	tombsAfter, _ := s.CountTombstones(context.Background())
	if after != before || tombsAfter != tombs {
		t.Errorf("%s %s was refused but changed the archive: %d→%d rows, %d→%d tombstones", method, path, before, after, tombs, tombsAfter)
	}
	return r
}

// seedBoth stores one mirrored and one local record and returns their ids.
func seedBoth(t *testing.T, s *storage.Store) (tapdID, localID int64) {
	t.Helper()
	seed(t, s, 1)
	all, err := s.ListActivities(context.Background(), storage.Filter{Source: storage.SourceTAPD}, 1, 0)
	if err != nil || len(all) != 1 {
		t.Fatalf("seed: %v %v", all, err)
	}
	localID, err = s.InsertActivity(context.Background(), storage.Activity{Platform: "tiktok", ActionType: "post", Timestamp: base})
	if err != nil {
		t.Fatal(err)
	}
	return all[0].ID, localID
}

const validBody = `{"platform":"tiktok","action_type":"post","timestamp":1707725000}`

func TestScopesWithTokensConfigured(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		tapdID, localID := seedBoth(t, s)
		c := serve(t, api.Options{Store: s, Tokens: scopedTokens()})
		post := jsonType
		withTok := func(tok string) []string { return append(append([]string{}, jsonType...), bearer(tok)...) }
		for _, tc := range []struct {
			name, method, path, body string
			headers                  []string
			status                   int
			want                     string
		}{
			{"post without token", "POST", "/api/v1/activity_log", validBody, post, 401, "needs a token of scope write"},
			{"post with read token", "POST", "/api/v1/activity_log", validBody, withTok(readTok), 403, `token "reader" has scope read`},
			{"post with unknown token", "POST", "/api/v1/activity_log", validBody, withTok("nope"), 401, "matches no configured token"},
			{"delete local without token", "DELETE", fmt.Sprint("/api/v1/activity_log/", localID), "", nil, 401, "scope write"},
			{"delete local with read token", "DELETE", fmt.Sprint("/api/v1/activity_log/", localID), "", bearer(readTok), 403, "scope write"},
			{"delete mirrored with write token", "DELETE", fmt.Sprint("/api/v1/activity_log/", tapdID), "", bearer(writeTok), 403, "deleting a mirrored TAPD record (evidence) needs a token of scope admin"},
			{"delete all with write token", "DELETE", "/api/v1/activity_log/all", "", bearer(writeTok), 403, "scope admin"},
			{"detail without token", "GET", "/api/v1/activity_log?detail=1", "", nil, 401, "detail=1"},
			{"detail walk without token", "GET", "/api/v1/activity_log?detail=1&cursor=", "", nil, 401, "detail=1"},
			{"export without token", "GET", "/api/v1/activity_log/export", "", nil, 401, "export needs a token of scope read"},
			{"runs with write token", "GET", "/api/v1/sync/runs", "", bearer(writeTok), 403, "scope auditor or admin"},
			{"status without token", "GET", "/api/v1/sync/status", "", nil, 401, "scope auditor or admin"},
			{"plain list with unknown token", "GET", "/api/v1/activity_log", "", bearer("nope"), 401, "matches no configured token"},
			{"basic auth", "GET", "/api/v1/activity_log", "", []string{"Authorization", "Basic YTpi"}, 401, "must be 'Bearer <token>'"},
			{"two authorization headers", "GET", "/api/v1/activity_log", "", append(bearer(readTok), bearer(adminTok)...), 400, "send one Authorization header, not 2"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := refused(t, s, c, tc.status, tc.want, tc.method, tc.path, tc.body, tc.headers...)
				if tc.status == 401 && r.header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			})
		}
		for _, tc := range []struct {
			name, path string
			headers    []string
		}{
			{"plain list, no token", "/api/v1/activity_log", nil},
			{"plain count, no token", "/api/v1/activity_log/count", nil},
			{"cursor without detail, no token", "/api/v1/activity_log?cursor=", nil},
			{"detail with read token", "/api/v1/activity_log?detail=1", bearer(readTok)},
			{"export with read token", "/api/v1/activity_log/export", bearer(readTok)},
			{"detail with admin token", "/api/v1/activity_log?detail=1", bearer(adminTok)},
			{"runs with admin token", "/api/v1/sync/runs", bearer(adminTok)},
			{"lower-case scheme", "/api/v1/activity_log?detail=1", []string{"Authorization", "bearer " + readTok}},
			{"upper-case scheme", "/api/v1/activity_log?detail=1", []string{"Authorization", "BEARER  " + readTok}},
		} {
			if r := c.send("GET", tc.path, "", tc.headers...); r.status != 200 {
				t.Errorf("%s: %d %s", tc.name, r.status, r.body)
			}
		}
		n := rows(t, s)
		for _, tok := range []string{writeTok, adminTok} {
			if r := c.send("POST", "/api/v1/activity_log", validBody, withTok(tok)...); r.status != 200 {
				t.Fatalf("post with %s: %d %s", tok, r.status, r.body)
			}
		}
		if r := c.send("DELETE", fmt.Sprint("/api/v1/activity_log/", localID), "", bearer(writeTok)...); r.status != 200 {
			t.Fatalf("delete local with write token: %d %s", r.status, r.body)
		}
		if r := c.send("DELETE", fmt.Sprint("/api/v1/activity_log/", tapdID), "", bearer(adminTok)...); r.status != 200 {
			t.Fatalf("delete mirrored with admin token: %d %s", r.status, r.body)
		}
		if got, tombs := rows(t, s), must(s.CountTombstones(context.Background())); got != n || tombs != 1 {
			t.Fatalf("after 2 inserts and 2 deletes: %d rows (want %d), %d tombstones (want 1)", got, n, tombs)
		}
	})
}

// TestDetailFiltersNeedTheReadScope: filters on fields only detail=1 shows
// would be an oracle (is 10.0.0.1 the IP of some record?) open to anyone on
// a default token setup; they need the read scope as detail=1 does.
func TestDetailFiltersNeedTheReadScope(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		seedBoth(t, s) // the mirrored record came from 10.0.0.1
		c := serve(t, api.Options{Store: s, Tokens: scopedTokens()})
		open := serve(t, api.Options{Store: s}) // no token configured: a loopback install
		for _, endpoint := range []string{"/api/v1/activity_log", "/api/v1/activity_log/count"} {
			for filter, named := range map[string]string{
				"ip=10.0.0.1":               "filtering by ip (fields only detail=1 shows) needs a token of scope read",
				"object=story":              "filtering by object",
				"source=tapd&ip=10.0.0.1":   "filtering by ip",
				"ip=10.0.0.1&object=story":  "filtering by ip, object",
				"platform=tapd&ip=10.0.0.1": "filtering by ip",
			} {
				path := endpoint + "?" + filter
				refused(t, s, c, 401, named, "GET", path, "")
				for _, tok := range []string{readTok, writeTok, adminTok} {
					if r := c.send("GET", path, "", bearer(tok)...); r.status != 200 {
						t.Errorf("GET %s with %s = %d %s", path, tok, r.status, r.body)
					}
				}
				if r := open.send("GET", path, ""); r.status != 200 {
					t.Errorf("GET %s with no token configured = %d %s", path, r.status, r.body)
				}
			}
			// Filters on the contract's fields, and an empty detail filter, stay open.
			for _, filter := range []string{"platform=tapd", "username=x", "q=需求", "ip=", "action_type=add&serial=1", "source=tapd"} {
				if r := c.send("GET", endpoint+"?"+filter, ""); r.status != 200 {
					t.Errorf("GET %s?%s without a token = %d %s", endpoint, filter, r.status, r.body)
				}
			}
		}
		if r := c.send("GET", "/api/v1/activity_log/count?ip=10.0.0.1", "", bearer(readTok)...); r.body != `{"code":0,"message":"success","data":{"count":1}}` {
			t.Errorf("count by ip with the read token = %s", r.body)
		}
		refused(t, s, c, 401, "filtering by ip", "GET", "/api/v1/activity_log?ip=10.0.0.1&limit=2&cursor=", "")
		for _, format := range []string{"csv", "ndjson", "bundle"} {
			refused(t, s, c, 401, "needs a token of scope read", "GET", "/api/v1/activity_log/export?format="+format+"&ip=10.0.0.1", "")
		}
	})
}

// statusSyncer answers the sync status; nothing else is asked of it here.
type statusSyncer struct{ api.Syncer }

func (statusSyncer) Status(context.Context) ([]syncer.WorkspaceStatus, error) {
	return []syncer.WorkspaceStatus{{Workspace: "10074561"}}, nil
}

// TestEvidenceAndStatusAreNeverCached: every answer that carries records,
// proofs or status says Cache-Control: no-store, refusals included.
func TestEvidenceAndStatusAreNeverCached(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		key := signingKey(t)
		_, localID := seedBoth(t, s)
		if _, _, err := s.SignCheckpoint(context.Background(), key, time.Now()); err != nil {
			t.Fatal(err)
		}
		c := serve(t, api.Options{Store: s, Tokens: scopedTokens(), Syncer: statusSyncer{},
			Integrity: api.Integrity{VerifierKey: key.VerifierKey(), Status: func() api.IntegrityStatus { return api.IntegrityStatus{} }}})
		for path, status := range map[string]int{
			"/api/v1/activity_log":                                      200,
			"/api/v1/activity_log?detail=1":                             200,
			"/api/v1/activity_log?detail=1&cursor=":                     200,
			"/api/v1/activity_log/count?ip=10.0.0.1":                    200,
			"/api/v1/activity_log/export":                               200,
			"/api/v1/activity_log/export?format=csv":                    200,
			"/api/v1/activity_log/export?format=ndjson":                 200,
			"/api/v1/activity_log/export?format=bundle":                 200,
			"/api/v1/activity_log/export?format=bundle&serial=10074561": 200,
			fmt.Sprint("/api/v1/integrity/proof/", localID):             200,
			"/api/v1/integrity/status":                                  200,
			"/api/v1/integrity/checkpoint":                              200,
			"/api/v1/integrity/checkpoints?since=0":                     200,
			"/api/v1/integrity/consistency?from=1&to=2":                 200,
			"/api/v1/sync/status":                                       200,
			"/api/v1/sync/runs":                                         200,
			"/api/v1/holds":                                             200,
			"/api/v1/integrity/proof/999":                               404,
		} {
			r := c.send("GET", path, "", bearer(adminTok)...)
			if r.status != status || r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("GET %s = %d, Cache-Control %q; want %d, no-store", path, r.status, r.header.Get("Cache-Control"), status)
			}
		}
		if r := c.send("GET", "/api/v1/activity_log?detail=1", ""); r.status != 401 || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("a refusal = %d, Cache-Control %q", r.status, r.header.Get("Cache-Control"))
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestDefaultInstallKeepsTheContractAndGuardsEvidence(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		c := serve(t, api.Options{Store: s})
		// The contract's five requests, exactly as before.
		c.expect("POST", "/api/v1/activity_log", `{"platform":"tiktok","serial":"device_serial_123","action_type":"post","action_detail":"Published video successfully","username":"user123","timestamp":1707725000}`,
			false, 200, `{"code":0,"message":"success","data":{"id":1}}`)
		c.expect("GET", "/api/v1/activity_log?platform=tiktok&limit=50&offset=0", "", false, 200,
			`{"code":0,"message":"success","data":[{"id":1,"platform":"tiktok","serial":"device_serial_123","action_type":"post","action_detail":"Published video successfully","username":"user123","timestamp":1707725000}]}`)
		c.expect("GET", "/api/v1/activity_log/count?platform=tiktok", "", false, 200, `{"code":0,"message":"success","data":{"count":1}}`)
		c.expect("DELETE", "/api/v1/activity_log/1", "", false, 200, `{"code":0,"message":"success","data":{"deleted":true,"id":1}}`)
		refused(t, s, c, 403, "TAPD_MIRROR_ADMIN_TOKEN", "DELETE", "/api/v1/activity_log/all", "")

		// Mirrored evidence is never deleted without an admin token.
		tapdID, _ := seedBoth(t, s)
		r := refused(t, s, c, 403, "deleting a mirrored TAPD record (evidence) needs a token of scope admin, and none is configured; set TAPD_MIRROR_ADMIN_TOKEN",
			"DELETE", fmt.Sprint("/api/v1/activity_log/", tapdID), "")
		if strings.Contains(r.body, "deleted") {
			t.Fatalf("refusal looks like success: %s", r.body)
		}
		// Reads beyond the contract are open here (loopback, no token); admin endpoints are not.
		for _, path := range []string{"/api/v1/activity_log?detail=1", "/api/v1/activity_log/export"} {
			if r := c.send("GET", path, ""); r.status != 200 {
				t.Errorf("%s on a default install = %d %s", path, r.status, r.body)
			}
		}
		refused(t, s, c, 403, "sync status and runs needs a token of scope auditor or admin, and none is configured", "GET", "/api/v1/sync/runs", "")
		// A token sent where none is configured is a mistake worth telling.
		refused(t, s, c, 401, "matches no configured token", "GET", "/api/v1/activity_log", "", bearer("x")...)
	})
}

func TestRequireReadTokenClosesPlainReads(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		c := serve(t, api.Options{Store: s, Tokens: scopedTokens(), RequireReadToken: true})
		for _, path := range []string{"/api/v1/activity_log", "/api/v1/activity_log/count"} {
			refused(t, s, c, 401, "reading activity logs (auth.require_read_token) needs a token of scope read", "GET", path, "")
			for _, tok := range []string{readTok, writeTok, adminTok} {
				if r := c.send("GET", path, "", bearer(tok)...); r.status != 200 {
					t.Errorf("GET %s with %s = %d %s", path, tok, r.status, r.body)
				}
			}
		}
		if r := c.send("GET", "/healthz", ""); r.status != 200 {
			t.Errorf("healthz needs no token: %d", r.status)
		}
	})
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestDeletionsAreLoggedWithTheTokenName(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		var logs syncBuffer
		c := serve(t, api.Options{Store: s, Tokens: scopedTokens(), Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		tapdID, localID := seedBoth(t, s)
		c.send("DELETE", fmt.Sprint("/api/v1/activity_log/", localID), "", bearer(writeTok)...)
		c.send("DELETE", fmt.Sprint("/api/v1/activity_log/", tapdID), "", bearer(adminTok)...)
		c.send("DELETE", "/api/v1/activity_log/all", "", bearer(adminTok)...)
		out := logs.String()
		for _, want := range []string{
			fmt.Sprintf(`"msg":"activity log deleted","id":%d,"source":"local","source_id":"","token":"writer"`, localID),
			fmt.Sprintf(`"msg":"activity log deleted","id":%d,"source":"tapd","source_id":"9000000","token":"ops"`, tapdID),
			`"msg":"all activity logs deleted","rows":0,"token":"ops"`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %s:\n%s", want, out)
			}
		}
		if strings.Contains(out, "token-000") {
			t.Fatalf("a token leaked into the log:\n%s", out)
		}
	})
	if api.TokenName(context.Background()) != "" {
		t.Fatal("TokenName of a context without a request identity is not empty")
	}
}

func TestFailedAuthenticationsAreLoggedThrottledAndCounted(t *testing.T) {
	s := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	var logs syncBuffer
	m := api.NewMetrics(nil)
	c := serve(t, api.Options{Store: s, Metrics: m, Tokens: scopedTokens(),
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	const guess = "guessed-token-value"
	for i := range 10 {
		if r := c.send("GET", "/api/v1/activity_log/export", "", bearer(guess)...); r.status != 401 {
			t.Fatalf("attempt %d = %d %s", i+1, r.status, r.body)
		}
	}
	r := c.send("GET", "/api/v1/activity_log/export", "", bearer(guess)...)
	if r.status != 429 || r.env.Code != 429 || r.header.Get("Retry-After") == "" || !strings.Contains(r.env.Message, "too many failed authentications") {
		t.Fatalf("attempt 11 = %d %v %s; want 429 with Retry-After", r.status, r.header, r.body)
	}
	// While throttled, even the right token waits: guessing gains nothing.
	if r := c.send("GET", "/api/v1/activity_log/export", "", bearer(readTok)...); r.status != 429 {
		t.Fatalf("right token while throttled = %d", r.status)
	}
	// Requests without a token are not throttled: the contract keeps working.
	if r := c.send("GET", "/api/v1/activity_log/count", ""); r.status != 200 {
		t.Fatalf("plain count while throttled = %d %s", r.status, r.body)
	}
	c.send("GET", "/api/v1/sync/status", "", bearer(readTok)...) // throttled too
	out := logs.String()
	if !strings.Contains(out, `"msg":"authentication failed","route":"GET /api/v1/activity_log/export","remote":"127.0.0.1","reason":"invalid"`) ||
		!strings.Contains(out, `"level":"DEBUG","msg":"authentication failed","route":"GET /api/v1/activity_log/export","remote":"127.0.0.1","reason":"throttled"`) ||
		strings.Count(out, `"level":"WARN"`) != 10 || strings.Contains(out, guess) || strings.Contains(out, readTok) {
		t.Fatalf("failure log is wrong or leaks a token:\n%s", out)
	}
	metrics := c.send("GET", "/metrics", "").body
	for _, want := range []string{`tapdmirror_http_auth_failures_total{reason="invalid"} 10`, `tapdmirror_http_auth_failures_total{reason="throttled"} 3`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// A token that matches but lacks the scope is logged with its name.
	c2 := serve(t, api.Options{Store: s, Metrics: api.NewMetrics(nil), Tokens: scopedTokens(), Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	c2.send("GET", "/api/v1/sync/runs", "", bearer(readTok)...)
	if !strings.Contains(logs.String(), `"route":"GET /api/v1/sync/runs","remote":"127.0.0.1","reason":"scope","token":"reader"`) {
		t.Fatalf("scope failure not logged with the token name:\n%s", logs.String())
	}
}

func TestMutationsNeedJSONAndTheSameOrigin(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		_, localID := seedBoth(t, s)
		c := serve(t, api.Options{Store: s})
		del := fmt.Sprint("/api/v1/activity_log/", localID)
		for _, tc := range []struct {
			name, method, path, body string
			headers                  []string
			status                   int
			want                     string
		}{
			{"text/plain body", "POST", "/api/v1/activity_log", validBody, []string{"Content-Type", "text/plain"}, 415, `Content-Type "text/plain" is not accepted`},
			{"form body", "POST", "/api/v1/activity_log", validBody, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "application/json"},
			{"empty form post", "POST", "/api/v1/sync", "", []string{"Content-Type", "multipart/form-data; boundary=x"}, 415, "application/json"},
			{"body without type", "POST", "/api/v1/activity_log", validBody, nil, 415, "has a body but no Content-Type"},
			{"json look-alike", "POST", "/api/v1/activity_log", validBody, []string{"Content-Type", "application/jsonx"}, 415, "not accepted"},
			{"two content types", "POST", "/api/v1/activity_log", validBody, []string{"Content-Type", "application/json", "Content-Type", "text/plain"}, 415, "not accepted"},
			{"cross-site origin", "POST", "/api/v1/activity_log", validBody, append([]string{"Origin", "https://evil.example"}, jsonType...), 403, "cross-site request refused"},
			{"null origin", "POST", "/api/v1/activity_log", validBody, append([]string{"Origin", "null"}, jsonType...), 403, "cross-site request refused"},
			{"cross-site fetch", "POST", "/api/v1/activity_log", validBody, append([]string{"Sec-Fetch-Site", "cross-site"}, jsonType...), 403, "cross-site"},
			{"same-site fetch", "POST", "/api/v1/activity_log", validBody, append([]string{"Sec-Fetch-Site", "same-site"}, jsonType...), 403, "cross-site"},
			{"cross-site delete", "DELETE", del, "", []string{"Origin", "http://localhost:3000"}, 403, "cross-site"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				refused(t, s, c, tc.status, tc.want, tc.method, tc.path, tc.body, tc.headers...)
			})
		}
		host := strings.TrimPrefix(c.base, "http://")
		for _, headers := range [][]string{
			{"Content-Type", "application/json; charset=utf-8"},
			{"Content-Type", "Application/JSON"},
			{"Content-Type", "application/json", "Origin", c.base, "Sec-Fetch-Site", "same-origin"},
			{"Content-Type", "application/json", "Origin", "http://" + host},
		} {
			if r := c.send("POST", "/api/v1/activity_log", validBody, headers...); r.status != 200 {
				t.Errorf("POST with %v = %d %s", headers, r.status, r.body)
			}
		}
		if r := c.send("DELETE", del, ""); r.status != 200 { // no body: no Content-Type needed
			t.Errorf("plain DELETE = %d %s", r.status, r.body)
		}
		// Reads are not mutations: a cross-site GET cannot read the answer anyway (no CORS).
		if r := c.send("GET", "/api/v1/activity_log/count", "", "Origin", "https://evil.example"); r.status != 200 {
			t.Errorf("GET with a foreign Origin = %d", r.status)
		}
	})
}

func TestHostAllowListAndHeaders(t *testing.T) {
	s := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	c := serve(t, api.Options{Store: s, Metrics: api.NewMetrics(nil), AllowedHosts: []string{"Mirror.Internal"}})
	for host, want := range map[string]int{
		"evil.example":               421,
		"evil.example:50809":         421,
		"localhost.evil.example":     421,
		"localhost":                  200,
		"LOCALHOST:1234":             200,
		"localhost.:50809":           200,
		"127.0.0.1:50809":            200,
		"[::1]:50809":                200,
		"10.1.2.3":                   200,
		"mirror.internal:8080":       200,
		"mirror.internal.":           200,
		strings.Repeat("x", 300):     421,
		"mirror.internal.evil:50809": 421,
	} {
		r := c.send("GET", "/api/v1/activity_log/count", "", "Host", host)
		if r.status != want || (want == 421 && (r.env.Code != 421 || !strings.Contains(r.env.Message, "allowed_hosts"))) {
			t.Errorf("Host %q = %d %s, want %d", host, r.status, r.body, want)
		}
		if want == 421 && len(r.env.Message) > 400 {
			t.Errorf("421 message echoes too much: %d bytes", len(r.env.Message))
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} { // probes may name the pod's address or anything
		if r := c.send("GET", path, "", "Host", "probe.cluster.local"); r.status != 200 {
			t.Errorf("%s with a foreign Host = %d", path, r.status)
		}
	}
	for _, path := range []string{"/api/v1/activity_log", "/nope", "/metrics", "/healthz"} {
		if r := c.send("GET", path, "", "Host", "evil.example"); r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s answers without nosniff", path)
		}
		if r := c.send("GET", path, ""); r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s answers without nosniff", path)
		}
	}
	anyHost := serve(t, api.Options{Store: s, AllowedHosts: []string{"*"}})
	if r := anyHost.send("GET", "/api/v1/activity_log/count", "", "Host", "whatever.example"); r.status != 200 {
		t.Errorf(`allowed_hosts "*" refused a Host: %d`, r.status)
	}
}

func TestErrorsEchoLittleInput(t *testing.T) {
	s := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	c := serve(t, api.Options{Store: s})
	long := strings.Repeat("A", 500)
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/api/v1/activity_log?" + long + "=1", ""},
		{"GET", "/api/v1/activity_log?limit=" + long, ""},
		{"GET", "/api/v1/activity_log?detail=" + long, ""},
		{"GET", "/api/v1/activity_log?source=" + long, ""},
		{"GET", "/api/v1/activity_log?cursor=" + long, ""},
		{"GET", "/api/v1/" + long, ""},
		{"PUT", "/api/v1/activity_log/" + long, ""},
		{"DELETE", "/api/v1/activity_log/" + long, ""},
		{"POST", "/api/v1/activity_log", `{"` + long + `":1}`},
		{"POST", "/api/v1/activity_log", `{"platform":` + strings.Repeat("1", 500) + `}`},
	} {
		r := c.send(tc.method, tc.path, tc.body, jsonType...)
		if r.status < 400 || r.env.Code != r.status || r.env.Message == "" {
			t.Errorf("%s %.40s… = %d %s", tc.method, tc.path, r.status, r.body)
		}
		if strings.Contains(r.env.Message, strings.Repeat("A", 101)) || strings.Contains(r.env.Message, strings.Repeat("1", 101)) {
			t.Errorf("%s %.40s… echoes more than 100 characters: %s", tc.method, tc.path, r.env.Message)
		}
	}
}

func TestTimesAreBoundedOnBothDatabases(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		c := serve(t, api.Options{Store: s})
		for _, ts := range []string{"0", "-1", "253402300800", "9223372036854775807"} {
			refused(t, s, c, 400, "timestamp must be Unix seconds from 1 to 253402300799", "POST", "/api/v1/activity_log",
				`{"platform":"a","action_type":"b","timestamp":`+ts+`}`, jsonType...)
		}
		for _, q := range []string{"since=0", "since=253402300800", "until=-5", "until=9223372036854775807", "since=99999999999999"} {
			refused(t, s, c, 400, "must be Unix seconds from 1 to 253402300799", "GET", "/api/v1/activity_log/count?"+q, "")
			refused(t, s, c, 400, "must be Unix seconds from 1 to 253402300799", "GET", "/api/v1/activity_log/export?"+q, "")
		}
		for _, cur := range []string{api.CursorAt(time.Unix(253402300800, 0), 5), api.CursorAt(time.Unix(0, 0), 5), api.CursorAt(time.Unix(-62135596800, 0), 5)} {
			refused(t, s, c, 400, "is not one this server issued", "GET", "/api/v1/activity_log?cursor="+cur, "")
		}
		// The bounds themselves work on both databases, end to end.
		for _, ts := range []int64{1, 253402300799} {
			r := c.send("POST", "/api/v1/activity_log", fmt.Sprintf(`{"platform":"edge","action_type":"b","timestamp":%d}`, ts), jsonType...)
			if r.status != 200 {
				t.Fatalf("timestamp %d = %d %s", ts, r.status, r.body)
			}
		}
		r := c.send("GET", "/api/v1/activity_log?platform=edge&since=1&until=253402300799&limit=1&cursor="+api.CursorAt(time.Unix(253402300799, 0), 1<<62), "")
		if r.status != 200 || !strings.Contains(r.body, `"timestamp":1}`) {
			t.Fatalf("bounded range and cursor = %d %s", r.status, r.body)
		}
		if r := c.send("GET", "/api/v1/activity_log?platform=edge&limit=1", ""); !strings.Contains(r.body, `"timestamp":253402300799}`) {
			t.Fatalf("year 9999 did not round-trip: %s", r.body)
		}
	})
}

func TestControlCharactersAndBadEncodingAreRefused(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		c := serve(t, api.Options{Store: s})
		post := func(fields string) string { return `{"platform":"a","action_type":"b",` + fields + `}` }
		for _, tc := range []struct{ name, body, want string }{
			{"raw invalid UTF-8", post(`"username":"` + "\xff\xfe" + `"`), "request body is not valid UTF-8"},
			{"truncated UTF-8", post(`"serial":"` + "\xe4\xb8" + `"`), "not valid UTF-8"},
			{"escaped NUL", post(`"serial":"a\u0000b"`), "field serial contains the control character U+0000"},
			{"tab in a short field", post(`"username":"a\tb"`), "field username contains the control character U+0009"},
			{"newline in platform", `{"platform":"a\nb","action_type":"b"}`, "field platform contains the control character U+000A"},
			{"carriage return in detail", post(`"action_detail":"a\rb"`), "only tab and newline are allowed"},
			{"DEL", post(`"serial":"a\u007fb"`), "U+007F"},
			{"C1 control", post(`"serial":"a\u0085b"`), "U+0085"},
			{"lone high surrogate", post(`"serial":"a\ud800b"`), "unpaired UTF-16 surrogate"},
			{"lone low surrogate", post(`"serial":"\udc00"`), "unpaired UTF-16 surrogate"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				refused(t, s, c, 400, tc.want, "POST", "/api/v1/activity_log", tc.body, jsonType...)
			})
		}
		for _, q := range []string{"platform=%00", "platform=a%00b", "serial=%ff", "username=%0a", "action_type=%C2%85", "plat%00form=x", "source=%e4%b8"} {
			t.Run(q, func(t *testing.T) {
				refused(t, s, c, 400, "parameter", "GET", "/api/v1/activity_log?"+q, "")
				refused(t, s, c, 400, "parameter", "GET", "/api/v1/activity_log/count?"+q, "")
			})
		}
		ok := post(`"action_detail":"line 1\n\tline 2 🚀 \ud83d\ude80 \\ud800 literal","username":"李雷"`)
		if r := c.send("POST", "/api/v1/activity_log", ok, jsonType...); r.status != 200 {
			t.Fatalf("valid text refused: %d %s", r.status, r.body)
		}
		if r := c.send("GET", "/api/v1/activity_log?limit=1", ""); !strings.Contains(r.body, `"action_detail":"line 1\n\tline 2 🚀 🚀 \\ud800 literal"`) {
			t.Fatalf("stored text changed: %s", r.body)
		}
	})
}

func TestOffsetIsCapped(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		c := serve(t, api.Options{Store: s})
		if r := c.send("GET", "/api/v1/activity_log?offset=100000", ""); r.status != 200 || r.body != `{"code":0,"message":"success","data":[]}` {
			t.Fatalf("offset at the cap = %d %s", r.status, r.body)
		}
		refused(t, s, c, 400, "offset 100001 is above 100000", "GET", "/api/v1/activity_log?offset=100001", "")
		r := refused(t, s, c, 400, "cursor=", "GET", "/api/v1/activity_log?offset=9223372036854775807", "")
		if !strings.Contains(r.env.Message, "export") {
			t.Errorf("offset cap message does not point to export: %s", r.env.Message)
		}
	})
}

func TestExportNeutralizesSpreadsheetFormulas(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		prefixes := []string{"=", "+", "-", "@", "\t", "\r"}
		var batch []storage.Activity
		for i, p := range prefixes {
			batch = append(batch, storage.Activity{Platform: "tapd", ActionType: p + "add", ActionDetail: p + "HYPERLINK(\"http://x\")",
				Username: p + "cmd|' /C calc'!A0", Timestamp: base.Add(time.Duration(i) * time.Minute), Source: storage.SourceTAPD,
				SourceID: fmt.Sprint(100 + i), Serial: p + "1", Extra: map[string]string{"title": p + "1+1"}})
		}
		batch = append(batch, storage.Activity{Platform: "tapd", ActionType: "add", ActionDetail: "a=b -c", Username: "plain",
			Timestamp: base.Add(time.Hour), Source: storage.SourceTAPD, SourceID: "200"})
		if _, err := s.UpsertMirrored(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		c := serve(t, api.Options{Store: s})
		out, err := csv.NewReader(strings.NewReader(c.send("GET", "/api/v1/activity_log/export?format=csv", "").body + "\n")).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != len(prefixes)+2 {
			t.Fatalf("csv has %d rows", len(out))
		}
		for i, p := range prefixes {
			row := out[i+1]
			for col, want := range map[int]string{2: "'" + p + "1", 3: "'" + p + "add", 4: "'" + p + "HYPERLINK(\"http://x\")", 5: "'" + p + "cmd|' /C calc'!A0"} {
				if row[col] != want {
					t.Errorf("prefix %q column %s = %q, want %q", p, out[0][col], row[col], want)
				}
			}
		}
		if last := out[len(out)-1]; last[4] != "a=b -c" || last[5] != "plain" || last[11] != "{}" {
			t.Errorf("harmless cells changed: %q", last)
		}
		nd := c.send("GET", "/api/v1/activity_log/export?format=ndjson", "").body
		if !strings.Contains(nd, `"username":"=cmd|' /C calc'!A0"`) || strings.Contains(nd, `"'=`) {
			t.Errorf("NDJSON is not raw:\n%s", nd)
		}
	})
}

// stalledWriter is an export client that stops reading: a successful
// response blocks in Write until release is closed.
type stalledWriter struct {
	header   http.Header
	code     int
	stalled  chan struct{} // closed when a 200 body write blocks
	release  chan struct{}
	once     sync.Once
	finished chan struct{}
}

func newStalledWriter(release chan struct{}) *stalledWriter {
	return &stalledWriter{header: http.Header{}, stalled: make(chan struct{}), release: release, finished: make(chan struct{})}
}

func (w *stalledWriter) Header() http.Header { return w.header }
func (w *stalledWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *stalledWriter) Write(p []byte) (int, error) {
	w.WriteHeader(200)
	if w.code == 200 {
		w.once.Do(func() { close(w.stalled) })
		<-w.release
	}
	return len(p), nil
}
func (w *stalledWriter) Flush() {}

func TestSlowExportsDoNotStarveTheService(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		seed(t, s, 3000) // more than the export's buffers hold
		h := newAPI(t, api.Options{Store: s, MaxExports: 2, Logger: quiet}).Handler()
		release := make(chan struct{})
		defer func() {
			select {
			case <-release:
			default:
				close(release)
			}
		}()
		var writers []*stalledWriter
		for range 4 {
			w := newStalledWriter(release)
			writers = append(writers, w)
			go func() {
				defer close(w.finished)
				h.ServeHTTP(w, httptest.NewRequest("GET", "http://localhost/api/v1/activity_log/export?format=csv", nil))
			}()
		}
		deadline := time.After(20 * time.Second)
		stalled, refused := 0, 0
		for _, w := range writers {
			select {
			case <-w.stalled:
				stalled++
			case <-w.finished:
				if w.code != http.StatusTooManyRequests || w.header.Get("Retry-After") == "" {
					t.Fatalf("an export beyond the limit answered %d", w.code)
				}
				refused++
			case <-deadline:
				t.Fatal("exports neither stalled nor finished")
			}
		}
		if stalled != 2 || refused != 2 {
			t.Fatalf("%d exports running, %d refused; want 2 and 2", stalled, refused)
		}
		// With two exports stuck on their clients, everything else still answers.
		within := func(what string, fn func() error) {
			t.Helper()
			done := make(chan error, 1)
			go func() { done <- fn() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s is blocked behind the stalled exports", what)
			}
		}
		for _, path := range []string{"/api/v1/activity_log?limit=5", "/api/v1/activity_log/count", "/readyz", "/api/v1/activity_log?limit=1&cursor="} {
			within("GET "+path, func() error {
				for range 3 { // more requests than the pool would have had left
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest("GET", "http://localhost"+path, nil))
					if rec.Code != 200 {
						return fmt.Errorf("status %d %s", rec.Code, rec.Body)
					}
				}
				return nil
			})
		}
		within("a sync write", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := s.UpsertMirrored(ctx, []storage.Activity{{Platform: "tapd", ActionType: "add", Timestamp: base,
				Source: storage.SourceTAPD, SourceID: "fresh-1"}})
			return err
		})
		close(release)
		for _, w := range writers {
			<-w.finished
		}
		completed := 0
		for _, w := range writers {
			if w.code == 200 {
				completed++
			}
		}
		if completed != 2 {
			t.Fatalf("%d exports completed after their clients resumed, want 2", completed)
		}
	})
}
