package main

import (
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

	"github.com/tapd-mirror/tapd-mirror/alert"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// TestServeAlertsOnMirroredAndLocalRecords: serve's real wiring mirrors the
// fake TAPD, where one user downloads five attachments in ten minutes; the
// threshold rule fires once for them (the backfill's older records do
// not page), and a rule on local records fires for one POSTed through the
// API. The WeCom robot, the webhook and a forward destination (as an alert
// event) receive the firings, GET /api/v1/alerts and /metrics report them,
// and the robot's key stays out of the logs.
func TestServeAlertsOnMirroredAndLocalRecords(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 7, Projects: 1, RecordsPerDay: 2})
		defer f.Close()
		at := time.Now().Add(-20 * time.Minute).Truncate(time.Second)
		for i := range 5 {
			f.AddRecord("10074561", at.Add(time.Duration(i)*time.Minute), func(r *tapdtest.Record) {
				r.Creator, r.TypeKey, r.ObjectKey, r.IP = "mallory", "download", "attachment", "203.0.113.9"
			})
		}
		var mu sync.Mutex
		var wecomBodies []string
		var hooks []alert.WebhookMessage
		var siemAlerts []forward.Event
		rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			defer mu.Unlock()
			switch r.URL.Path {
			case "/cgi-bin/webhook/send":
				if r.URL.RawQuery != "key=e2e-wecom-k3y" {
					t.Errorf("wecom query %q", r.URL.RawQuery)
				}
				wecomBodies = append(wecomBodies, string(body))
				io.WriteString(w, `{"errcode":0,"errmsg":"ok"}`)
			case "/hook":
				mac := hmac.New(sha256.New, []byte("hook-s3cret"))
				mac.Write(body)
				if r.Header.Get(alert.SignatureHeader) != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
					t.Errorf("webhook signature %q", r.Header.Get(alert.SignatureHeader))
				}
				var m alert.WebhookMessage
				json.Unmarshal(body, &m)
				hooks = append(hooks, m)
			case "/siem": // the forward destination: its filter lets no record through, alerts come
				mac := hmac.New(sha256.New, []byte("siem-s3cret"))
				mac.Write(body)
				if r.Header.Get(forward.SignatureHeader) != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
					t.Errorf("forward signature %q", r.Header.Get(forward.SignatureHeader))
				}
				for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
					var e forward.Event
					if err := json.Unmarshal([]byte(line), &e); err != nil {
						t.Errorf("forward line %q: %v", line, err)
					}
					if e.Alert != nil {
						if k := r.Header.Get(forward.IdempotencyHeader); k != fmt.Sprintf("alert-siem-alerts-%d-%d", e.Alert.ID, e.Alert.ID) {
							t.Errorf("forward idempotency key %q for alert %d", k, e.Alert.ID)
						}
						siemAlerts = append(siemAlerts, e)
					}
				}
			default:
				t.Errorf("request to %s", r.URL.Path)
			}
		}))
		defer rc.Close()
		cfgPath := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
forward:
  - {name: siem, kind: webhook, url: "%[1]s/siem", secret: siem-s3cret, filter: {action_type: none-such}}
alerts:
  timezone: Asia/Shanghai
  notifiers:
    - {name: ops, kind: wecom, url: "%[1]s/cgi-bin/webhook/send?key=e2e-wecom-k3y"}
    - {name: hook, kind: webhook, url: "%[1]s/hook", secret: hook-s3cret}
    - {name: siem-alerts, kind: forward, destination: siem}
  rules:
    - name: bulk-download
      match: {action_type: download}
      threshold: {count: 5, window: 1h, per: username}
      notify: [ops, hook, siem-alerts]
    - name: local-login
      match: {source: local, action_type: login}
      notify: [hook]
`, rc.URL)), 0o600); err != nil {
			t.Fatal(err)
		}
		env := fakeEnv(f, dbURL, "10074561")
		env["TAPD_MIRROR_READ_TOKEN"] = "read-tok"
		p := start(t, env, "serve", "--config", cfgPath)
		req, _ := http.NewRequest("POST", p.base+"/api/v1/activity_log", strings.NewReader(fmt.Sprintf(
			`{"platform":"web","action_type":"login","username":"eve","timestamp":%d}`, time.Now().Unix())))
		req.Header.Set("Authorization", "Bearer tok")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var page struct {
			Data struct {
				Firings []struct {
					Rule, Key  string
					Count      int64
					Deliveries []struct{ Notifier, Status string }
				}
			}
		}
		for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			code, body := getAuth(t, p.base+"/api/v1/alerts", "read-tok")
			page.Data.Firings = nil
			json.Unmarshal([]byte(body), &page)
			sent := 0
			for _, f := range page.Data.Firings {
				for _, d := range f.Deliveries {
					if d.Status == "sent" {
						sent++
					}
				}
			}
			if code == 200 && sent == 4 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("firings not delivered: %d %s\n%s", code, body, p.stderr)
			}
		}
		byRule := map[string]string{}
		for _, f := range page.Data.Firings {
			byRule[f.Rule] = f.Key
			if f.Rule == "bulk-download" && f.Count != 5 {
				t.Errorf("bulk-download counted %d", f.Count)
			}
		}
		if len(page.Data.Firings) != 2 || byRule["bulk-download"] != "mallory" || byRule["local-login"] != "eve" {
			t.Fatalf("firings %+v, want bulk-download for mallory and local-login for eve", page.Data.Firings)
		}
		code, metrics := getAuth(t, p.base+"/metrics", "tok")
		if code != 200 || !strings.Contains(metrics, `tapdmirror_alert_firings_total{rule="bulk-download"} 1`) ||
			!strings.Contains(metrics, `tapdmirror_alert_notification_failures_total{notifier="ops"} 0`) {
			t.Errorf("metrics lack alerts:\n%s", metrics)
		}
		if err := p.stop(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(wecomBodies) != 1 || !strings.Contains(wecomBodies[0], `"msgtype":"markdown"`) || !strings.Contains(wecomBodies[0], "mallory") {
			t.Errorf("wecom got %q", wecomBodies)
		}
		got := 0
		for _, m := range hooks {
			got += len(m.Firings)
		}
		if got != 2 {
			t.Errorf("webhook got %d firings: %+v", got, hooks)
		}
		if len(siemAlerts) != 1 || siemAlerts[0].Type != "alert" || siemAlerts[0].Alert.Rule != "bulk-download" ||
			siemAlerts[0].Alert.Key != "mallory" || siemAlerts[0].Alert.Count != 5 || siemAlerts[0].Index != 0 {
			t.Errorf("the forward destination got alerts %+v", siemAlerts)
		}
		if strings.Contains(p.stderr.String(), "e2e-wecom-k3y") || strings.Contains(p.stderr.String(), "hook-s3cret") {
			t.Errorf("a notifier secret reached the logs:\n%s", p.stderr)
		}
	})
}

// TestConfigCheckMasksNotifierSecrets: `config check` shows the notifiers
// and the effective rules, every robot key and signing secret masked, and a
// mistake names its key.
func TestConfigCheckMasksNotifierSecrets(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfgPath, []byte(`
alerts:
  notifiers:
    - {name: ops, kind: wecom, url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=PLANTEDwecomKey"}
    - {name: ding, kind: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=PLANTEDdingToken", secret: PLANTEDdingSecret}
    - {name: fs, kind: feishu, url: "https://open.feishu.cn/open-apis/bot/v2/hook/PLANTEDfeishuHook", secret: PLANTEDfeishuSecret}
  defaults: {enabled: true, notify: [ops, ding, fs]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	m := &Main{Stdout: &out, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	if err := m.Run(context.Background(), []string{"config", "check", "--config", cfgPath}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Contains(s, "PLANTED") || !strings.Contains(s, "send?key=xxxxx") || !strings.Contains(s, "access_token=xxxxx") ||
		!strings.Contains(s, "hook/xxxxx") || !strings.Contains(s, "secret=****") || !strings.Contains(s, "name=new-ip condition=first_seen") {
		t.Fatalf("config check printed:\n%s", s)
	}
	if err := os.WriteFile(cfgPath, []byte("alerts:\n  rules:\n    - {name: r, notify: [nobody]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := m.Run(context.Background(), []string{"config", "check", "--config", cfgPath})
	if err == nil || !strings.Contains(err.Error(), "alerts.rules[0] (r).notify") {
		t.Fatalf("config check of a rule sending nowhere = %v", err)
	}
}
