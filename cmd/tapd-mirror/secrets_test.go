package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// Every secret a deployment can hold, planted so a leak is unmistakable.
const (
	plantDBUserinfo   = "PLANTEDdbUserinfoPw1"
	plantDBQuery      = "PLANTEDdbQueryPw2"
	plantDBKeyword    = "PLANTEDdbKeywordPw3"
	plantDBBroken     = "PLANTEDdbBrokenPw4"
	plantTAPDPassword = "PLANTEDtapdPassword5"
	plantTAPDToken    = "PLANTEDtapdAccessToken6"
	plantTAPDWrongPw  = "PLANTEDtapdWrongPassword7"
	plantBaseURLPw    = "PLANTEDbaseUrlPw8"
	plantAdminToken   = "PLANTEDadminToken9-xxxxxxxxxxxxxxxxxxxxxxx"
	plantReadToken    = "PLANTEDreadToken10-xxxxxxxxxxxxxxxxxxxxxxx"
	plantWriteToken   = "PLANTEDwriteToken11-xxxxxxxxxxxxxxxxxxxxxx"
	plantListToken    = "PLANTEDlistToken12-xxxxxxxxxxxxxxxxxxxxxxx"
	plantGuessedToken = "PLANTEDguessedToken13"
)

// transcript collects everything a run printed or returned.
type transcript struct{ strings.Builder }

func (tr *transcript) add(what string, parts ...string) {
	tr.WriteString("== " + what + "\n")
	for _, p := range parts {
		tr.WriteString(p + "\n")
	}
}

func (tr *transcript) errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// leaks returns the planted secrets (or the tell-tale prefix) found in text.
func leaks(text string) []string {
	var found []string
	for _, s := range []string{plantDBUserinfo, plantDBQuery, plantDBKeyword, plantDBBroken, plantTAPDPassword, plantTAPDToken,
		plantTAPDWrongPw, plantBaseURLPw, plantAdminToken, plantReadToken, plantWriteToken, plantListToken, plantGuessedToken, "PLANTED"} {
		if strings.Contains(text, s) || strings.Contains(text, url.QueryEscape(s)) {
			found = append(found, s)
		}
	}
	return found
}

func withPassword(t *testing.T, dbURL string) string {
	t.Helper()
	if !strings.HasPrefix(dbURL, "postgres") {
		return dbURL // SQLite has no password; its runs still plant every other secret
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), plantDBUserinfo) // trust auth ignores it
	return u.String()
}

// TestNoSecretReachesALogLineOrAnError runs the real program — config
// check, serve with requests of every kind, one-shot sync, failing starts —
// with every secret planted, and greps all it printed and returned.
func TestNoSecretReachesALogLineOrAnError(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		var tr transcript
		f := tapdtest.New(tapdtest.Options{Seed: 3, Projects: 1, Months: 1, RecordsPerDay: 2,
			User: "bot", Password: plantTAPDPassword, Token: plantTAPDToken})
		defer f.Close()
		base, _ := url.Parse(f.URL)
		base.User = url.UserPassword("proxyuser", plantBaseURLPw)
		cfgFile := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(cfgFile, []byte("auth:\n  tokens:\n    - {name: auditor, token: "+plantListToken+", scope: read}\n"), 0o600)
		env := map[string]string{
			"TAPD_MIRROR_DATABASE_URL":             withPassword(t, dbURL),
			"TAPD_MIRROR_LISTEN":                   "127.0.0.1:0",
			"TAPD_MIRROR_ADMIN_TOKEN":              plantAdminToken,
			"TAPD_MIRROR_READ_TOKEN":               plantReadToken,
			"TAPD_MIRROR_WRITE_TOKEN":              plantWriteToken,
			"TAPD_MIRROR_TAPD_BASE_URL":            base.String(),
			"TAPD_MIRROR_TAPD_API_USER":            "bot",
			"TAPD_MIRROR_TAPD_API_PASSWORD":        plantTAPDPassword,
			"TAPD_MIRROR_WORKSPACES":               f.Projects()[0].ID,
			"TAPD_MIRROR_TAPD_REQUESTS_PER_MINUTE": "60000",
		}
		run := func(what string, env map[string]string, args ...string) {
			var out, errOut syncBuffer
			m := &Main{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
			err := m.Run(context.Background(), append(args, "--config", cfgFile))
			tr.add(what, out.String(), errOut.String(), tr.errText(err))
		}
		with := func(changes map[string]string) map[string]string {
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			for k, v := range changes {
				e[k] = v
			}
			return e
		}

		run("config check", env, "config", "check")

		// serve, with authorized, refused and failing requests of each kind.
		p := start(t, env, "serve", "--log-format", "json", "--config", cfgFile, "--log-level", "debug")
		call := func(method, path, token, body string) (int, string) {
			req, _ := http.NewRequest(method, p.base+path, strings.NewReader(body))
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			tr.add(method+" "+path, string(b))
			return resp.StatusCode, string(b)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, body := call("GET", "/api/v1/sync/status", plantAdminToken, "")
			var st struct {
				Data []struct {
					LastSuccess *json.RawMessage `json:"last_success"`
				} `json:"data"`
			}
			json.Unmarshal([]byte(body), &st)
			if len(st.Data) == 1 && st.Data[0].LastSuccess != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the scheduled sync did not succeed: %s\n%s", body, p.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if code, _ := call("POST", "/api/v1/activity_log", plantWriteToken, `{"platform":"a","action_type":"b","timestamp":5}`); code != 200 {
			t.Fatalf("POST with the write token = %d", code)
		}
		call("GET", "/api/v1/activity_log?detail=1&limit=1", plantReadToken, "")
		call("GET", "/api/v1/activity_log/export?format=ndjson", plantListToken, "")
		call("GET", "/api/v1/sync/runs", plantReadToken, "") // scope failure
		if code, body := call("DELETE", "/api/v1/activity_log/1", plantAdminToken, ""); code != 200 {
			t.Fatalf("DELETE with the admin token = %d %s", code, body)
		}
		call("POST", "/api/v1/sync", plantAdminToken, `{"full":true}`)
		for range 12 { // last: the address is throttled afterwards
			call("GET", "/api/v1/activity_log/export", plantGuessedToken, "") // invalid, then throttled
		}
		call("GET", "/metrics", "", "")
		if err := p.stop(); err != nil {
			t.Fatalf("serve stopped with %v", err)
		}
		tr.add("serve log", p.stderr.String())

		run("sync", env, "sync", "--log-format", "text", "--log-level", "debug")
		run("sync with a wrong TAPD password", with(map[string]string{"TAPD_MIRROR_TAPD_API_PASSWORD": plantTAPDWrongPw}),
			"sync", "--log-format", "json", "--log-level", "debug")
		run("sync with an access token", with(map[string]string{"TAPD_MIRROR_TAPD_API_USER": "", "TAPD_MIRROR_TAPD_API_PASSWORD": "",
			"TAPD_MIRROR_TAPD_ACCESS_TOKEN": plantTAPDToken}), "sync", "--log-format", "json", "--log-level", "debug")
		for _, bad := range []string{
			"postgres://app:" + plantDBUserinfo + "@127.0.0.1:1/x?sslmode=disable&connect_timeout=2",
			"postgres://app@127.0.0.1:1/x?sslmode=disable&connect_timeout=2&password=" + plantDBQuery,
			"host=127.0.0.1 port=1 user=app password=" + plantDBKeyword,
			"postgres://app:" + plantDBBroken + "%zz@127.0.0.1:1/x",
			"postgres://app:" + plantDBUserinfo + "@127.0.0.1:1,127.0.0.1:2/x?sslmode=disable&connect_timeout=2", // a host list
			"mysql://app:" + plantDBUserinfo + "@127.0.0.1:1/x",                                                  // neither form
		} {
			e := with(map[string]string{"TAPD_MIRROR_DATABASE_URL": bad})
			run("serve with "+bad[:12], e, "serve", "--log-format", "json")
			run("migrate with "+bad[:12], e, "migrate", "--log-format", "text")
			run("config check with "+bad[:12], e, "config", "check")
		}
		run("public listen with short tokens", with(map[string]string{"TAPD_MIRROR_LISTEN": "0.0.0.0:0", "TAPD_MIRROR_READ_TOKEN": "PLANTEDshort"}),
			"serve")
		run("plain-http TAPD", with(map[string]string{"TAPD_MIRROR_TAPD_BASE_URL": "http://proxyuser:" + plantBaseURLPw + "@tapd.example"}), "config", "check")

		all := tr.String()
		// The transcript must hold real output, or finding nothing proves nothing.
		for _, want := range []string{"serving Activity Log API", "window synced", "authentication failed", "activity log deleted",
			`"token":"admin_token"`, "auth.tokens[0]", "connecting to postgres database", "does not parse", "must start with postgres:// or sqlite:",
			"auth.read_token: is 12 characters", "tapd.base_url: http://proxyuser:xxxxx@tapd.example is plain http"} {
			if !strings.Contains(all, want) {
				t.Errorf("the transcript lacks %q: the run did not exercise what it should", want)
			}
		}
		if found := leaks(all); len(found) > 0 {
			for _, line := range strings.Split(all, "\n") {
				if len(leaks(line)) > 0 {
					t.Log(line)
				}
			}
			t.Fatalf("secrets leaked: %v", found)
		}
	})
}

func TestLoggerAndErrorsScrubSecrets(t *testing.T) {
	var out syncBuffer
	log, err := newLogger(&out, "json", "info", []string{plantDBUserinfo, "abc"})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("dsn "+plantDBUserinfo, "attr", "x"+plantDBUserinfo, "err", io.ErrUnexpectedEOF,
		"wrapped", &url.Error{Op: "Get", URL: "http://u:" + plantDBUserinfo + "@h", Err: io.EOF}, "took", 1500*time.Millisecond, "short", "abc")
	got := out.String()
	if strings.Contains(got, "PLANTED") || !strings.Contains(got, `"msg":"dsn ****"`) || !strings.Contains(got, `"attr":"x****"`) ||
		!strings.Contains(got, `"took":"1.5s"`) || !strings.Contains(got, `"short":"abc"`) {
		t.Fatalf("log line = %s", got)
	}
	m := &Main{secrets: []string{plantTAPDPassword}}
	err = m.scrub(usageError{errors.New("bad flag near " + plantTAPDPassword)})
	var usage usageError
	if !errors.As(err, &usage) || strings.Contains(err.Error(), "PLANTED") {
		t.Fatalf("scrubbed error = %v (usage error kept: %v)", err, errors.As(err, &usage))
	}
}

func TestPublicListenEndToEnd(t *testing.T) {
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "p.db")
	long := strings.Repeat("k", 40)
	p := start(t, map[string]string{"TAPD_MIRROR_DATABASE_URL": dbURL, "TAPD_MIRROR_LISTEN": "0.0.0.0:0",
		"TAPD_MIRROR_ADMIN_TOKEN": long, "TAPD_MIRROR_ALLOWED_HOSTS": "mirror.test"}, "serve", "--log-format", "json")
	for host, want := range map[string]int{"mirror.test:50809": 200, "127.0.0.1": 200, "evil.test": 421} {
		req, _ := http.NewRequest("GET", p.base+"/api/v1/activity_log/count", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s = %d, want %d", host, resp.StatusCode, want)
		}
	}
	p.stop()
	if !strings.Contains(p.stderr.String(), "set auth.require_read_token") {
		t.Fatalf("no warning about open reads on a public listen:\n%s", p.stderr)
	}
}

// TestDestinationURLAndBasicCredentialsNeverShow: the witness URL's query
// values and userinfo are masked by config check and kept out of a failed
// publish's log line and error; and a TAPD refusal that echoes the
// Authorization header does not put the base64 of a user:secret pair into
// sync's output.
func TestDestinationURLAndBasicCredentialsNeverShow(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 3, Projects: 1, Months: 1, RecordsPerDay: 2, EchoAuthorization: true})
		defer f.Close()
		gone := httptest.NewServer(http.NotFoundHandler()) // a witness that is down: its address refuses
		addr := gone.Listener.Addr().String()
		gone.Close()
		env := fakeEnv(f, dbURL, f.Projects()[0].ID)
		env["TAPD_MIRROR_INTEGRITY_KEY_FILE"] = filepath.Join(t.TempDir(), "signing.key")
		env["TAPD_MIRROR_INTEGRITY_PUBLISH_URL"] = "http://witness:PLANTEDwitnessPw@" + addr +
			"/cp?access_token=PLANTEDwitnessToken&sig=PLANTED%2Bsig%2F&PLANTEDbare"
		var tr transcript

		out, stderr, err := run(t, env, "config", "check")
		tr.add("config check", out, stderr, tr.errText(err))
		if want := "integrity.publish_url      = http://xxxxx:xxxxx@" + addr + "/cp?access_token=xxxxx&sig=xxxxx&xxxxx\n"; err != nil || !strings.Contains(out, want) {
			t.Fatalf("config check = %v, want the line %q:\n%s", err, want, out)
		}

		out, stderr, err = run(t, env, "sync", "--log-format", "text")
		tr.add("sync, the witness down", out, stderr, tr.errText(err))
		var warned []string
		for _, line := range strings.Split(stderr, "\n") {
			if strings.Contains(line, "publishing an integrity checkpoint") {
				warned = append(warned, line)
			}
		}
		if err != nil || len(warned) != 1 || strings.Count(warned[0], "/cp") != 1 || !strings.Contains(warned[0], "connection refused") {
			t.Fatalf("sync = %v; want one WARN naming the witness once (masked) and why:\n%s", err, stderr)
		}

		user, _ := f.Credentials()
		app, _ := f.AppCredentials()
		pairs := []string{user + ":PLANTEDwrongApiPw", app + ":PLANTEDwrongAppSecret"}
		for i, change := range []map[string]string{
			{"TAPD_MIRROR_TAPD_API_PASSWORD": "PLANTEDwrongApiPw"},
			{"TAPD_MIRROR_TAPD_API_USER": "", "TAPD_MIRROR_TAPD_API_PASSWORD": "",
				"TAPD_MIRROR_TAPD_CLIENT_ID": app, "TAPD_MIRROR_TAPD_CLIENT_SECRET": "PLANTEDwrongAppSecret"},
		} {
			e := maps.Clone(env)
			maps.Copy(e, change)
			for _, format := range []string{"text", "json"} {
				out, stderr, err := run(t, e, "sync", "--log-format", format)
				text := out + stderr + tr.errText(err)
				tr.add(fmt.Sprint("sync refused, credentials ", i, ", ", format), text)
				if err == nil || !strings.Contains(text, "(Authorization: Basic ****)") {
					t.Fatalf("sync with credentials %d (%s) = %v; want TAPD's echo of the header, scrubbed:\n%s", i, format, err, text)
				}
			}
		}

		all := tr.String()
		if found := leaks(all); len(found) > 0 {
			t.Fatalf("secrets leaked: %v\n%s", found, all)
		}
		for _, pair := range pairs {
			if b64 := base64.StdEncoding.EncodeToString([]byte(pair)); strings.Contains(all, b64[:len(b64)-4]) {
				t.Fatalf("the base64 of %q (%s) leaked:\n%s", pair, b64, all)
			}
		}
	})
}
