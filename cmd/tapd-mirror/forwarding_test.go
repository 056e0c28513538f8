package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// TestServeForwardsTheMirrorToAWebhookAndFiles: serve's real wiring syncs
// the fake TAPD and delivers every record it stored, signed, to a webhook,
// to a Splunk HEC receiver and to NDJSON files; GET /api/v1/forward and
// /metrics report it, and the destinations' secrets stay out of the logs.
func TestServeForwardsTheMirrorToAWebhookAndFiles(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 5, Projects: 1, RecordsPerDay: 3})
		defer f.Close()
		var mu sync.Mutex
		var got []forward.Event
		rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mac := hmac.New(sha256.New, []byte("hmac-s3cret"))
			mac.Write(body)
			if r.Header.Get("X-Tapd-Mirror-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) ||
				r.Header.Get("Content-Type") != "application/x-ndjson" || r.URL.Query().Get("key") != "url-k3y" {
				t.Errorf("request %v %v", r.Header, r.URL)
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for sc := bufio.NewScanner(bytes.NewReader(body)); sc.Scan(); {
				var e forward.Event
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					t.Errorf("line %q: %v", sc.Text(), err)
				}
				got = append(got, e)
			}
		}))
		defer rc.Close()
		var hecEvents int
		hec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if r.URL.Path != "/services/collector/event" || r.Header.Get("Authorization") != "Splunk hec-t0ken" {
				w.WriteHeader(http.StatusForbidden)
				io.WriteString(w, `{"text":"Invalid token","code":4}`)
				return
			}
			mu.Lock()
			hecEvents += strings.Count(string(body), `"sourcetype":"tapd:mirror"`)
			mu.Unlock()
			io.WriteString(w, `{"text":"Success","code":0}`)
		}))
		defer hec.Close()
		dir := t.TempDir()
		cfgPath := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
forward:
  - name: siem
    kind: webhook
    url: %s/ingest?key=url-k3y
    secret: hmac-s3cret
  - name: lake
    kind: file
    path: %s
    filter: {source: tapd}
  - name: down
    kind: webhook
    url: http://hook-user:hook-pw@127.0.0.1:1/in?key=down-k3y
    secret: down-s3cret
  - name: splunk
    kind: splunk_hec
    url: %s
    token: hec-t0ken
`, rc.URL, dir, hec.URL)), 0o600); err != nil {
			t.Fatal(err)
		}
		env := fakeEnv(f, dbURL, "10074561")
		env["TAPD_MIRROR_READ_TOKEN"] = "read-tok"
		p := start(t, env, "serve", "--config", cfgPath)
		type statusJSON struct {
			Data struct {
				Destinations []forward.Status `json:"destinations"`
			} `json:"data"`
		}
		authed := func(path string) (int, string) { return getAuth(t, p.base+path, "tok") }
		st := storagetest.Open(t, dbURL)
		ctx := context.Background()
		var size int64
		var status statusJSON
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
			n, _ := st.CountActivities(ctx, storage.Filter{Source: storage.SourceTAPD})
			head, _ := st.Head(ctx)
			code, body := authed("/api/v1/forward")
			status = statusJSON{}
			json.Unmarshal([]byte(body), &status)
			if code == 200 && n > 0 && head.Size >= n && len(status.Data.Destinations) == 4 &&
				status.Data.Destinations[0].Cursor == head.Size && status.Data.Destinations[1].Cursor == head.Size &&
				status.Data.Destinations[3].Cursor == head.Size {
				if down := status.Data.Destinations[2]; down.LastError == "" || down.Cursor != 0 || down.LagEvents != head.Size {
					t.Fatalf("the down destination: %+v", down)
				}
				size = head.Size
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not forwarded: %d %s (%d records)\n%s", code, body, n, p.stderr)
			}
		}
		if d := status.Data.Destinations[0]; d.Name != "siem" || d.Kind != "webhook" || d.LagEvents != 0 || d.LastSuccess == nil || d.Failing {
			t.Fatalf("status %+v", d)
		}
		code, metrics := authed("/metrics")
		if code != 200 || !strings.Contains(metrics, `tapdmirror_forward_delivered_total{destination="siem"}`) ||
			!strings.Contains(metrics, `tapdmirror_forward_lag_events{destination="lake"} 0`) ||
			!strings.Contains(metrics, "tapdmirror_forward_failures_total") {
			t.Errorf("metrics lack forwarding:\n%s", metrics)
		}
		if code, _ := get(t, p.base+"/api/v1/forward"); code != http.StatusUnauthorized {
			t.Errorf("GET /api/v1/forward without a token: %d", code)
		}
		if code, _ := getAuth(t, p.base+"/api/v1/forward", "read-tok"); code != http.StatusForbidden {
			t.Errorf("GET /api/v1/forward with a read token: %d", code)
		}
		if err := p.stop(); err != nil {
			t.Fatal(err)
		}
		// Every record the mirror stored reached the webhook, in log order.
		mu.Lock()
		defer mu.Unlock()
		seen := map[string]bool{}
		for i, e := range got {
			if e.Index != int64(i) {
				t.Fatalf("event %d has index %d", i, e.Index)
			}
			if e.Record != nil {
				seen[e.Record.SourceID] = true
			}
		}
		if int64(len(got)) != size {
			t.Fatalf("webhook got %d events of %d", len(got), size)
		}
		rows, err := st.ListActivities(ctx, storage.Filter{Source: storage.SourceTAPD}, 100000, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range rows {
			if !seen[a.SourceID] {
				t.Errorf("TAPD record %s not forwarded", a.SourceID)
			}
		}
		// The file destination closed its file on shutdown: same events.
		files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
		var lines int
		for _, name := range files {
			raw, _ := os.ReadFile(name)
			lines += bytes.Count(raw, []byte("\n"))
		}
		if files == nil || int64(lines) != size {
			t.Errorf("files %v hold %d lines, want %d", files, lines, size)
		}
		if int64(hecEvents) != size {
			t.Errorf("Splunk HEC got %d events, want %d", hecEvents, size)
		}
		if !strings.Contains(p.stderr.String(), "forward delivery failed") {
			t.Fatalf("the down destination's failures are not logged:\n%s", p.stderr)
		}
		for _, secret := range []string{"hmac-s3cret", "url-k3y", "down-k3y", "down-s3cret", "hook-pw", "hec-t0ken"} {
			if strings.Contains(p.stderr.String(), secret) {
				t.Errorf("%s in the logs:\n%s", secret, p.stderr)
			}
		}
	})
}

// TestConfigCheckReadsTheFilesServeNeeds: a TLS syslog destination whose CA
// file is missing fails `config check`, as it would fail serve's start.
func TestConfigCheckReadsTheFilesServeNeeds(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.yaml")
	write := func(ca string) {
		t.Helper()
		cfg := "forward:\n  - {name: qradar, kind: syslog, address: 'siem.example:6514', tls: true, format: cef, ca_file: " + ca + "}\n"
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m := &Main{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	write(filepath.Join(dir, "missing-ca.pem"))
	err := m.Run(context.Background(), []string{"config", "check", "--config", cfgPath})
	if err == nil || !strings.Contains(err.Error(), "syslog destination qradar: reading ca_file") {
		t.Fatalf("config check with a missing ca_file = %v", err)
	}
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	write(notPEM)
	if err := m.Run(context.Background(), []string{"config", "check", "--config", cfgPath}); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatalf("config check with a ca_file that is no certificate = %v", err)
	}
}
