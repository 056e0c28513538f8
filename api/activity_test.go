package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

const token = "s3cret"

// adminOnly configures token as the one admin token; "" configures none.
func adminOnly(token string) []config.Token {
	if token == "" {
		return nil
	}
	return []config.Token{{Name: "admin", Token: token, Scope: config.ScopeAdmin}}
}

type client struct {
	t    *testing.T
	base string
}

func newServer(t *testing.T, s *storage.Store, adminToken string) client {
	t.Helper()
	srv := httptest.NewServer(newAPI(t, api.Options{Store: s, Tokens: adminOnly(adminToken)}).Handler())
	t.Cleanup(srv.Close)
	return client{t: t, base: srv.URL}
}

// do sends a request and returns status and body; auth adds the bearer
// token, and a body goes as application/json.
func (c client) do(method, path, body string, auth bool) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func (c client) expect(method, path, body string, auth bool, wantStatus int, wantBody string) {
	c.t.Helper()
	status, got := c.do(method, path, body, auth)
	if status != wantStatus || got != wantBody {
		c.t.Errorf("%s %s\n got %d %s\nwant %d %s", method, path, status, got, wantStatus, wantBody)
	}
}

func TestContractExactJSON(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		c := newServer(t, s, token)
		c.expect("GET", "/api/v1/activity_log", "", false, 200, `{"code":0,"message":"success","data":[]}`)
		c.expect("POST", "/api/v1/activity_log", `{"platform":"tiktok","serial":"device_serial_123","action_type":"post","action_detail":"Published video successfully","username":"user123","timestamp":1707725000}`,
			true, 200, `{"code":0,"message":"success","data":{"id":1}}`)
		c.expect("POST", "/api/v1/activity_log", `{"platform":"instagram","serial":"s2","action_type":"follow","action_detail":"关注 <b>&","username":"李雷","timestamp":1707725100}`,
			true, 200, `{"code":0,"message":"success","data":{"id":2}}`)
		c.expect("GET", "/api/v1/activity_log?platform=tiktok&limit=50&offset=0", "", false, 200,
			`{"code":0,"message":"success","data":[{"id":1,"platform":"tiktok","serial":"device_serial_123","action_type":"post","action_detail":"Published video successfully","username":"user123","timestamp":1707725000}]}`)
		c.expect("GET", "/api/v1/activity_log?limit=1", "", false, 200,
			`{"code":0,"message":"success","data":[{"id":2,"platform":"instagram","serial":"s2","action_type":"follow","action_detail":"关注 <b>&","username":"李雷","timestamp":1707725100}]}`)
		c.expect("GET", "/api/v1/activity_log/count?platform=tiktok", "", false, 200, `{"code":0,"message":"success","data":{"count":1}}`)
		c.expect("GET", "/api/v1/activity_log/count", "", false, 200, `{"code":0,"message":"success","data":{"count":2}}`)
		c.expect("GET", "/api/v1/activity_log/count?since=1707725050&until=1707725101", "", false, 200, `{"code":0,"message":"success","data":{"count":1}}`)
		c.expect("GET", "/api/v1/activity_log/count?username=李雷&source=local", "", false, 200, `{"code":0,"message":"success","data":{"count":1}}`)
		c.expect("GET", "/api/v1/activity_log?serial=nope", "", false, 200, `{"code":0,"message":"success","data":[]}`)
		c.expect("DELETE", "/api/v1/activity_log/1", "", true, 200, `{"code":0,"message":"success","data":{"deleted":true,"id":1}}`)
		c.expect("DELETE", "/api/v1/activity_log/1", "", true, 404, `{"code":404,"message":"activity log 1 not found","data":null}`)
		c.expect("DELETE", "/api/v1/activity_log/all", "", true, 200, `{"code":0,"message":"success","data":{"deleted":true,"message":"All activity logs deleted"}}`)
		c.expect("GET", "/api/v1/activity_log/count", "", false, 200, `{"code":0,"message":"success","data":{"count":0}}`)
	})
}

func TestBadInputIsRejectedAndWritesNothing(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		c := newServer(t, s, token)
		big := `{"platform":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`
		cases := []struct {
			name, method, path, body string
			auth                     bool
			status                   int
			message                  string
		}{
			{"malformed json", "POST", "/api/v1/activity_log", `{"platform":`, true, 400, "malformed JSON"},
			{"not an object", "POST", "/api/v1/activity_log", `[1,2]`, true, 400, "must be a JSON object"},
			{"empty body", "POST", "/api/v1/activity_log", ``, true, 400, "request body is empty"},
			{"trailing data", "POST", "/api/v1/activity_log", `{"platform":"a","action_type":"b"} {}`, true, 400, "trailing data"},
			{"timestamp as string", "POST", "/api/v1/activity_log", `{"platform":"a","action_type":"b","timestamp":"1707725000"}`, true, 400, "field timestamp must be an integer"},
			{"timestamp fractional", "POST", "/api/v1/activity_log", `{"platform":"a","action_type":"b","timestamp":1.5}`, true, 400, "field timestamp must be an integer"},
			{"platform as number", "POST", "/api/v1/activity_log", `{"platform":7,"action_type":"b"}`, true, 400, "field platform must be a string"},
			{"missing required", "POST", "/api/v1/activity_log", `{"serial":"x"}`, true, 400, "platform is required; action_type is required"},
			{"negative timestamp", "POST", "/api/v1/activity_log", `{"platform":"a","action_type":"b","timestamp":-5}`, true, 400, "timestamp must be Unix seconds from 1 to 253402300799 (the end of year 9999), got -5"},
			{"unknown field", "POST", "/api/v1/activity_log", `{"platform":"a","action_type":"b","actiontype":"c"}`, true, 400, `unknown field "actiontype"`},
			{"body too large", "POST", "/api/v1/activity_log", big, true, 413, "larger than 1048576 bytes"},
			{"no token", "POST", "/api/v1/activity_log", `{"platform":"a","action_type":"b"}`, false, 401, "changing activity logs needs a token of scope write"},
			{"limit zero", "GET", "/api/v1/activity_log?limit=0", ``, false, 400, "limit must be between 1 and 1000, got 0"},
			{"limit too big", "GET", "/api/v1/activity_log?limit=1001", ``, false, 400, "limit must be between 1 and 1000"},
			{"limit not a number", "GET", "/api/v1/activity_log?limit=ten", ``, false, 400, `limit must be an integer, got "ten"`},
			{"negative offset", "GET", "/api/v1/activity_log?offset=-1", ``, false, 400, "offset must be at least 0"},
			{"unknown param", "GET", "/api/v1/activity_log?platfrom=x", ``, false, 400, "unknown parameter(s) platfrom"},
			{"bad source", "GET", "/api/v1/activity_log/count?source=jira", ``, false, 400, `source must be "local" or "tapd"`},
			{"since after until", "GET", "/api/v1/activity_log?since=10&until=5", ``, false, 400, "since (10) must be before until (5)"},
			{"repeated param", "GET", "/api/v1/activity_log?platform=a&platform=b", ``, false, 400, `"platform" is given 2 times`},
			{"non-integer id", "DELETE", "/api/v1/activity_log/abc", ``, true, 400, `id must be a positive integer, got "abc"`},
			{"delete without token", "DELETE", "/api/v1/activity_log/1", ``, false, 401, "needs a token of scope write"},
			{"delete all without token", "DELETE", "/api/v1/activity_log/all", ``, false, 401, "deleting all activity logs needs a token of scope admin"},
			{"unsupported method", "PUT", "/api/v1/activity_log", `{}`, true, 405, "method PUT is not allowed"},
			{"unsupported method count", "POST", "/api/v1/activity_log/count", ``, true, 405, "allowed: GET"},
			{"unsupported method id", "GET", "/api/v1/activity_log/5", ``, true, 405, "allowed: DELETE"},
			{"unknown path", "GET", "/api/v2/nothing", ``, false, 404, "no such endpoint"},
		}
		if _, err := s.InsertActivity(context.Background(), storage.Activity{Platform: "keep", ActionType: "me", Source: "local"}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				status, body := c.do(tc.method, tc.path, tc.body, tc.auth)
				var env struct {
					Code    int             `json:"code"`
					Message string          `json:"message"`
					Data    json.RawMessage `json:"data"`
				}
				if err := json.Unmarshal([]byte(body), &env); err != nil {
					t.Fatalf("body is not a JSON envelope: %q", body)
				}
				if status != tc.status || env.Code != tc.status || !strings.Contains(env.Message, tc.message) || string(env.Data) != "null" {
					t.Errorf("got %d %s; want status and code %d with message containing %q", status, body, tc.status, tc.message)
				}
			})
		}
		if n, _ := s.CountActivities(context.Background(), storage.Filter{}); n != 1 {
			t.Fatalf("rejected requests changed the table: %d rows, want 1", n)
		}
	})
}

func TestNoAdminTokenConfigured(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		c := newServer(t, s, "")
		c.expect("POST", "/api/v1/activity_log", `{"platform":"a","action_type":"b","timestamp":5}`, false, 200, `{"code":0,"message":"success","data":{"id":1}}`)
		status, body := c.do("DELETE", "/api/v1/activity_log/all", "", false)
		if status != 403 || !strings.Contains(body, "TAPD_MIRROR_ADMIN_TOKEN") {
			t.Fatalf("delete all with no token configured = %d %s; want 403 naming the env var", status, body)
		}
		c.expect("GET", "/api/v1/activity_log/count", "", false, 200, `{"code":0,"message":"success","data":{"count":1}}`)
	})
}
