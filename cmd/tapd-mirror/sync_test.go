package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

func fakeEnv(f *tapdtest.Server, dbURL, workspaces string) map[string]string {
	user, pw := f.Credentials()
	return map[string]string{
		"TAPD_MIRROR_DATABASE_URL":             dbURL,
		"TAPD_MIRROR_LISTEN":                   "127.0.0.1:0",
		"TAPD_MIRROR_ADMIN_TOKEN":              "tok",
		"TAPD_MIRROR_TAPD_BASE_URL":            f.URL,
		"TAPD_MIRROR_TAPD_API_USER":            user,
		"TAPD_MIRROR_TAPD_API_PASSWORD":        pw,
		"TAPD_MIRROR_WORKSPACES":               workspaces,
		"TAPD_MIRROR_TAPD_REQUESTS_PER_MINUTE": "60000",
	}
}

func TestSyncCommandEndToEnd(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 9, RecordsPerDay: 4})
		defer f.Close()
		env := fakeEnv(f, dbURL, "projects:2001,company:2001")
		var out, errOut syncBuffer
		m := &Main{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
		if err := m.Run(context.Background(), []string{"sync", "--log-format", "text"}); err != nil {
			t.Fatalf("sync: %v\n%s", err, errOut.String())
		}
		if got := strings.Count(out.String(), " success "); got != 4 {
			t.Fatalf("want 4 successful workspaces, got:\n%s", out.String())
		}
		if !strings.Contains(errOut.String(), "window synced") || !strings.Contains(errOut.String(), "rate_per_s=") {
			t.Fatalf("no progress on stderr:\n%s", errOut.String())
		}
		_, pw := f.Credentials()
		if strings.Contains(errOut.String(), pw) {
			t.Fatal("TAPD password in logs")
		}
		st := storagetest.Open(t, dbURL)
		n, _ := st.CountActivities(context.Background(), storage.Filter{Source: storage.SourceTAPD})
		want := 0
		for _, p := range f.Projects() {
			want += len(f.Queryable(p.ID, false))
		}
		want += len(f.Queryable(f.CompanyID(), true))
		// The first minutes after the horizon are left alone (margin), so a few may be missing.
		if n == 0 || int(n) > want || int(n) < want-5 {
			t.Fatalf("mirrored %d records, TAPD holds %d", n, want)
		}
		err := m.Run(context.Background(), []string{"sync", "--workspace", "999"})
		if err == nil || !strings.Contains(err.Error(), "not configured") {
			t.Fatalf("unknown workspace: %v", err)
		}
		if err := m.Run(context.Background(), []string{"sync", "--since", "yesterday"}); err == nil {
			t.Fatal("bad --since accepted")
		}
	})
}

func TestServeSchedulesAndTriggers(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 5, Projects: 1, RecordsPerDay: 3})
		defer f.Close()
		p := start(t, fakeEnv(f, dbURL, "10074561"), "serve")
		authed := func(method, path, body string) (int, string) {
			req, _ := http.NewRequest(method, p.base+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer tok")
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		// The schedule's first run starts at once.
		var status struct {
			Data []struct {
				Workspace     string `json:"workspace"`
				RecordsStored int    `json:"records_stored"`
				LastSuccess   *struct {
					Trigger string `json:"trigger"`
				} `json:"last_success"`
				NextRun *time.Time `json:"next_run"`
				AtRisk  *struct {
					OldestUnfetched  time.Time `json:"oldest_unfetched"`
					ExpiresInSeconds int64     `json:"expires_in_seconds"`
				} `json:"at_risk"`
			} `json:"data"`
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := authed("GET", "/api/v1/sync/status", "")
			json.Unmarshal([]byte(body), &status)
			if code == 200 && len(status.Data) == 1 && status.Data[0].LastSuccess != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no successful scheduled sync: %d %s\n%s", code, body, p.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// What is left to fetch after a sync is the last minutes: months from expiring.
		if s := status.Data[0]; s.LastSuccess.Trigger != "schedule" || s.RecordsStored == 0 || s.NextRun == nil ||
			s.AtRisk == nil || s.AtRisk.ExpiresInSeconds < 180*24*3600 {
			t.Fatalf("status = %+v", s)
		}
		_, metrics := get(t, p.base+"/metrics")
		for _, want := range []string{
			`tapdmirror_sync_runs_total{outcome="success",workspace="10074561"} 1`,
			`tapdmirror_records_written_total{result="inserted",workspace="10074561"}`,
			`tapdmirror_tapd_requests_total{code="200"}`,
			`tapdmirror_workspace_seconds_since_last_success{workspace="10074561"}`,
			`tapdmirror_workspace_gaps{workspace="10074561"} 0`,
			`tapdmirror_tapd_rate_limit_wait_seconds_total`,
			`tapdmirror_tapd_rate_limit_per_minute 60000`,
			`tapdmirror_workspace_oldest_unfetched_expiry_seconds{workspace="10074561"}`,
			`tapdmirror_tapd_quota_paused_until_seconds 0`,
		} {
			if !strings.Contains(metrics, want) {
				t.Fatalf("metrics lack %s:\n%s", want, metrics)
			}
		}
		if strings.Contains(metrics, "tapdmirror_workspace_oldest_mirror_only_record_timestamp_seconds{") {
			t.Fatal("a fresh mirror reports records older than TAPD's horizon")
		}
		if code, _ := get(t, p.base+"/api/v1/sync/status"); code != 401 {
			t.Fatalf("status without token = %d, want 401", code)
		}
		f.SetLatency(300 * time.Millisecond)
		code, body := authed("POST", "/api/v1/sync", `{"workspace":"10074561","full":true}`)
		if code != 202 || !strings.Contains(body, `"queued":["10074561"]`) {
			t.Fatalf("trigger = %d %s", code, body)
		}
		// A second trigger says what is running already instead of dropping it silently.
		if code, body := authed("POST", "/api/v1/sync", ``); code != 202 ||
			!strings.Contains(body, `"queued":[]`) || !strings.Contains(body, `"already_running":[{"workspace":"10074561","where":"this process (`) {
			t.Fatalf("second trigger while running = %d %s", code, body)
		}
		if code, body := authed("POST", "/api/v1/sync", `{"workspace":"42"}`); code != 404 {
			t.Fatalf("trigger of unknown workspace = %d %s", code, body)
		}
		if code, body := authed("POST", "/api/v1/sync", `{"full":"yes"}`); code != 400 {
			t.Fatalf("bad body = %d %s", code, body)
		}
		for body, want := range map[string]int{`{"workspace":"10074561","note":"none expected"}`: 200, `{"note":"x"}`: 400, `{"workspace":"42"}`: 404} {
			if code, got := authed("POST", "/api/v1/sync/gaps/ack", body); code != want {
				t.Fatalf("ack %s = %d %s, want %d", body, code, got, want)
			}
		}
		f.SetLatency(0)
		if err := p.stop(); err != nil {
			t.Fatalf("stop: %v", err)
		}
		var buf bytes.Buffer
		buf.WriteString(p.stderr.String())
		if !strings.Contains(buf.String(), "sync run finished") {
			t.Fatalf("no run summary logged:\n%s", buf.String())
		}
	})
}

// TestOAuthAppSyncsAcrossTokenExpiries runs `serve` as an OAuth app while
// TAPD's clock jumps past the token's lifetime again and again: each run that
// meets an expired token renews it once and succeeds; no secret is logged.
func TestOAuthAppSyncsAcrossTokenExpiries(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 6, Projects: 1, Months: 1, RecordsPerDay: 3, TokenLifetime: time.Hour})
		defer f.Close()
		env := fakeEnv(f, dbURL, "10074561")
		delete(env, "TAPD_MIRROR_TAPD_API_USER")
		delete(env, "TAPD_MIRROR_TAPD_API_PASSWORD")
		id, secret := f.AppCredentials()
		env["TAPD_MIRROR_TAPD_CLIENT_ID"], env["TAPD_MIRROR_TAPD_CLIENT_SECRET"] = id, secret
		env["TAPD_MIRROR_SYNC_INTERVAL"] = "1s"
		p := start(t, env, "serve", "--log-format", "text")
		st := storagetest.Open(t, dbURL)
		ctx := context.Background()
		succeeded := func() int {
			runs, _ := st.ListRuns(ctx, "", storage.OutcomeSuccess, 1000, 0)
			return len(runs)
		}
		waitFor := func(n int) {
			deadline := time.Now().Add(30 * time.Second)
			for succeeded() < n {
				if time.Now().After(deadline) {
					t.Fatalf("only %d successful runs, want %d\n%s", succeeded(), n, p.stderr)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		waitFor(1)
		for range 3 {
			f.Advance(90 * time.Minute) // the token in use has expired at TAPD
			f.AddRecords("10074561", f.Now().Add(-10*time.Minute), 2)
			waitFor(succeeded() + 2) // a run that began after the jump finished
		}
		if err := p.stop(); err != nil {
			t.Fatal(err)
		}
		if n := f.TokenRequests(); n < 4 {
			t.Fatalf("%d token requests for 3 expiries", n)
		}
		runs, _ := st.ListRuns(ctx, "", "", 1000, 0)
		for _, r := range runs {
			if r.Outcome != storage.OutcomeSuccess {
				t.Fatalf("run %d: %s %s", r.ID, r.Outcome, r.Error)
			}
		}
		if strings.Contains(p.stderr.String(), secret) {
			t.Fatal("the client secret reached the log")
		}
		var check syncBuffer
		m := &Main{Stdout: &check, Stderr: &check, Getenv: func(k string) string { return env[k] }}
		if err := m.Run(ctx, []string{"config", "check"}); err != nil || !strings.Contains(check.String(), "TAPD auth: client_id/client_secret") {
			t.Fatalf("config check: %v\n%s", err, check.String())
		}
	})
}
