package tapdtest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

type tokenAnswer struct {
	Status int    `json:"status"`
	Info   string `json:"info"`
	Data   struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		TokenType   string `json:"token_type"`
		Now         string `json:"now"`
	} `json:"data"`
}

func requestToken(t *testing.T, f *tapdtest.Server, method, id, secret, grant string) (int, tokenAnswer) {
	t.Helper()
	req, _ := http.NewRequest(method, f.URL+"/tokens/request_token", strings.NewReader(url.Values{"grant_type": {grant}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Status int             `json:"status"`
		Info   string          `json:"info"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("token answer is not JSON: %v", err)
	}
	a := tokenAnswer{Status: env.Status, Info: env.Info}
	json.Unmarshal(env.Data, &a.Data) // "" on errors, as TAPD sends
	return resp.StatusCode, a
}

// withBearer calls member_activity_log with a Bearer token.
func withBearer(t *testing.T, f *tapdtest.Server, token string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.URL+"/workspaces/member_activity_log?workspace_id="+f.Projects()[0].ID, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(raw)
}

func TestClientCredentialsGrant(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 1, RecordsPerDay: 1})
	defer f.Close()
	id, secret := f.AppCredentials()
	status, a := requestToken(t, f, "POST", id, secret, "client_credentials")
	if status != 200 || a.Status != 1 || a.Info != "success" || a.Data.TokenType != "Bearer" || a.Data.ExpiresIn != 7200 ||
		a.Data.Now != "2026-11-25 12:00:00" || !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(a.Data.AccessToken) {
		t.Fatalf("token answer %d %+v", status, a)
	}
	token := a.Data.AccessToken
	if status, _, body := withBearer(t, f, token); status != 200 {
		t.Fatalf("fresh token refused: %d %s", status, body)
	}
	f.Advance(7199 * time.Second)
	if status, _, body := withBearer(t, f, token); status != 200 {
		t.Fatalf("token refused a second before expiry: %d %s", status, body)
	}
	f.Advance(time.Second)
	if status, _, body := withBearer(t, f, token); status != 422 || !strings.Contains(body, "The access token provided has expired") {
		t.Fatalf("expired token: %d %s, want 422", status, body)
	}
	if status, _, body := withBearer(t, f, "0123456789abcdef0123456789abcdef01234567"); status != 422 || !strings.Contains(body, "The access token provided is invalid") {
		t.Fatalf("unknown token: %d %s, want 422", status, body)
	}
	// The personal token does not expire.
	if status, _, body := withBearer(t, f, f.Token()); status != 200 {
		t.Fatalf("personal token after time travel: %d %s", status, body)
	}

	if status, a := requestToken(t, f, "POST", id, "wrong", "client_credentials"); status != 401 || a.Status != 401 || a.Data.AccessToken != "" {
		t.Fatalf("wrong secret: %d %+v, want 401", status, a)
	}
	if status, _ := requestToken(t, f, "POST", id, secret, "password"); status != 422 {
		t.Fatalf("grant_type password: %d, want 422", status)
	}
	if status, _ := requestToken(t, f, "GET", id, secret, "client_credentials"); status != 405 {
		t.Fatalf("GET: %d, want 405", status)
	}
	if n := f.TokenRequests(); n != 4 {
		t.Fatalf("TokenRequests = %d, want 4", n)
	}

	_, b := requestToken(t, f, "POST", id, secret, "client_credentials")
	f.RevokeTokens()
	if status, _, body := withBearer(t, f, b.Data.AccessToken); status != 422 || !strings.Contains(body, "is invalid") {
		t.Fatalf("revoked token: %d %s", status, body)
	}
}

func TestTokenRejectedWith401(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 1, Now: now, Months: 1, RecordsPerDay: 1,
		TokenRejectStatus: http.StatusUnauthorized, TokenLifetime: time.Minute, ClientID: "app", ClientSecret: "s3cret"})
	defer f.Close()
	status, a := requestToken(t, f, "POST", "app", "s3cret", "client_credentials")
	if status != 200 || a.Data.ExpiresIn != 60 {
		t.Fatalf("token answer %d %+v, want expires_in 60", status, a)
	}
	f.Advance(time.Minute)
	status, h, body := withBearer(t, f, a.Data.AccessToken)
	if status != 401 || !strings.Contains(body, `"status":401`) || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("expired token: %d %q %s, want 401 invalid_token", status, h.Get("WWW-Authenticate"), body)
	}
}
