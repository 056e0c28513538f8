package alert_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapd-mirror/tapd-mirror/alert"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// request is what a receiver got.
type request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

// receiver is an in-process vendor endpoint answering from a script (the
// last answer repeats).
type receiver struct {
	mu      sync.Mutex
	got     []request
	answers []answer
	srv     *httptest.Server
}

type answer struct {
	status int
	body   string
}

func newReceiver(t *testing.T, answers ...answer) *receiver {
	rc := &receiver{answers: answers}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
		a := rc.answers[min(len(rc.got), len(rc.answers))-1]
		rc.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.got...)
}

// everyDownload fires once per user.
var everyDownload = config.AlertRule{Name: "every-download", Match: config.AlertMatch{ActionType: "download"}, Notify: []string{"ops"}}

// burst stores one download for each of n users: n firings.
func burst(t *testing.T, s *storage.Store, n int) {
	var batch []storage.Activity
	for i := range n {
		batch = append(batch, rec(fmt.Sprintf("user%02d", i), "download", "10.0.0.1", now.Add(-time.Minute)))
	}
	store(t, s, batch...)
}

// deliverAll evaluates, then runs the notifier until every firing is sent
// (dests: the forward destinations a forward notifier names).
func deliverAll(t *testing.T, s *storage.Store, n config.Notifier, want int, dests ...config.Forward) (*alert.Engine, []storage.AlertFiring) {
	t.Helper()
	n.Name, n.PerMinute = "ops", 600
	e, err := alert.New(alert.Options{Store: s, Rules: []config.AlertRule{everyDownload}, Notifiers: []config.Notifier{n}, Forward: dests,
		Location: shanghai, Now: func() time.Time { return now }, Poll: 20 * time.Millisecond,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	catchUp(t, e) // the whole burst is pending before the notifier starts
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got := firings(t, s)
		sent := 0
		for _, f := range got {
			if len(f.Deliveries) == 1 && f.Deliveries[0].Status == storage.DeliverySent {
				sent++
			}
		}
		if len(got) == want && sent == want {
			return e, got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d firings sent: %+v", sent, want, got)
		}
	}
}

// metric is the value of a counter of e's with the given label value.
func metric(t *testing.T, e *alert.Engine, name, label string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no metric %s{%s}", name, label)
	return 0
}

// checkGrouped: the burst went out in the one accepted message, after the
// rate-limited attempt, and each firing records it.
func checkGrouped(t *testing.T, e *alert.Engine, got []storage.AlertFiring, n int) {
	t.Helper()
	for _, f := range got {
		d := f.Deliveries[0]
		if d.Grouped != n || d.Attempts != 2 || d.LastError != "" || d.SentAt.IsZero() {
			t.Fatalf("delivery %+v, want sent grouped in one message of %d after 2 attempts", d, n)
		}
	}
	if v := metric(t, e, "tapdmirror_alert_notification_failures_total", "ops"); v != 1 {
		t.Fatalf("failures metric %v, want 1", v)
	}
	if v := metric(t, e, "tapdmirror_alert_firings_total", "every-download"); v != float64(n) {
		t.Fatalf("firings metric %v, want %d", v, n)
	}
}

// jsonEqual: body is exactly the JSON encoding of want (our field order,
// no extra fields, no whitespace).
func jsonEqual(t *testing.T, body []byte, want any) {
	t.Helper()
	exp, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, exp) {
		t.Fatalf("body\n%s\nwant\n%s", body, exp)
	}
}

func checkPost(t *testing.T, r request, path string) {
	t.Helper()
	if r.Method != http.MethodPost || r.Path != path || r.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("request %s %s (%s), want POST %s JSON", r.Method, r.Path, r.Header.Get("Content-Type"), path)
	}
}

// TestWeComRobot: the documented request (POST …/webhook/send?key=…, a
// markdown message whose content fits 4096 bytes); errcode 45009 (rate
// limit) is retried, and the burst of firings goes out as one summary.
func TestWeComRobot(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		rc := newReceiver(t, answer{200, `{"errcode":45009,"errmsg":"api freq out of limit"}`}, answer{200, `{"errcode":0,"errmsg":"ok"}`})
		burst(t, s, 300)
		e, got := deliverAll(t, s, config.Notifier{Kind: "wecom", URL: rc.srv.URL + "/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"}, 300)
		reqs := rc.requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests, want the limited one and its retry", len(reqs))
		}
		for _, r := range reqs {
			checkPost(t, r, "/cgi-bin/webhook/send")
			if r.RawQuery != "key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa" {
				t.Fatalf("query %q", r.RawQuery)
			}
			var m struct {
				Markdown struct{ Content string } `json:"markdown"`
			}
			if err := json.Unmarshal(r.Body, &m); err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, r.Body, map[string]any{"msgtype": "markdown", "markdown": map[string]string{"content": m.Markdown.Content}})
			if c := m.Markdown.Content; len(c) > 4096 || !strings.Contains(c, "300 alert firings") || !strings.Contains(c, "300 firings of every-download: user00, user01") ||
				!strings.Contains(c, "and 280 more") {
				t.Fatalf("content (%d bytes):\n%s", len(c), c)
			}
		}
		checkGrouped(t, e, got, 300)
	})
}

// TestDingTalkRobot: the signed request (access_token, timestamp in ms,
// sign = url-encoded base64 HMAC-SHA256 of timestamp+"\n"+secret),
// a markdown message with title and text; errcode 130101 is retried.
func TestDingTalkRobot(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		rc := newReceiver(t, answer{200, `{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}`}, answer{200, `{"errcode":0,"errmsg":"ok"}`})
		burst(t, s, 3)
		secret := "SEC7f3e2c1b0a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2"
		e, got := deliverAll(t, s, config.Notifier{Kind: "dingtalk", URL: rc.srv.URL + "/robot/send?access_token=ding-tok-42", Secret: secret}, 3)
		ts := strconv.FormatInt(now.UnixMilli(), 10)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(ts + "\n" + secret))
		sign := base64.StdEncoding.EncodeToString(mac.Sum(nil))
		reqs := rc.requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests", len(reqs))
		}
		for _, r := range reqs {
			checkPost(t, r, "/robot/send")
			for _, part := range []string{"access_token=ding-tok-42", "timestamp=" + ts, "sign=" + strings.ReplaceAll(
				strings.ReplaceAll(strings.ReplaceAll(sign, "+", "%2B"), "/", "%2F"), "=", "%3D")} {
				if !strings.Contains("&"+r.RawQuery+"&", "&"+part+"&") {
					t.Fatalf("query %q lacks %q", r.RawQuery, part)
				}
			}
			var m struct {
				Markdown struct{ Title, Text string } `json:"markdown"`
			}
			if err := json.Unmarshal(r.Body, &m); err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, r.Body, map[string]any{"msgtype": "markdown", "markdown": map[string]string{"title": m.Markdown.Title, "text": m.Markdown.Text}})
			if m.Markdown.Title != "tapd-mirror: 3 alert firings" || !strings.Contains(m.Markdown.Text, "3 firings of every-download: user00, user01, user02") {
				t.Fatalf("message %+v", m.Markdown)
			}
		}
		checkGrouped(t, e, got, 3)
	})
}

// TestFeishuBot: the signed body (timestamp in seconds as a string, sign
// = base64 HMAC-SHA256 of empty data keyed with timestamp+"\n"+secret), an
// interactive card holding the markdown; code 11232 is retried.
func TestFeishuBot(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		rc := newReceiver(t, answer{400, `{"code":11232,"msg":"frequency limited psm[lark.oapi.app_platform_runtime]","data":{}}`},
			answer{200, `{"code":0,"msg":"success","data":{}}`})
		burst(t, s, 1)
		secret := "fs-Gq2VbX9cLr8n"
		e, got := deliverAll(t, s, config.Notifier{Kind: "feishu", URL: rc.srv.URL + "/open-apis/bot/v2/hook/0b8f3c2e-hook-token", Secret: secret}, 1)
		ts := strconv.FormatInt(now.Unix(), 10)
		mac := hmac.New(sha256.New, []byte(ts+"\n"+secret))
		sign := base64.StdEncoding.EncodeToString(mac.Sum(nil))
		reqs := rc.requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests", len(reqs))
		}
		for _, r := range reqs {
			checkPost(t, r, "/open-apis/bot/v2/hook/0b8f3c2e-hook-token")
			var m struct {
				Card struct {
					Elements []struct{ Content string } `json:"elements"`
				} `json:"card"`
			}
			if err := json.Unmarshal(r.Body, &m); err != nil || len(m.Card.Elements) != 1 {
				t.Fatalf("body %s (%v)", r.Body, err)
			}
			text := m.Card.Elements[0].Content
			jsonEqual(t, r.Body, map[string]any{"msg_type": "interactive", "timestamp": ts, "sign": sign, "card": map[string]any{
				"header":   map[string]any{"title": map[string]string{"tag": "plain_text", "content": "tapd-mirror alert: every-download"}, "template": "red"},
				"elements": []any{map[string]string{"tag": "markdown", "content": text}}}})
			if !strings.Contains(text, "> key: user00") || !strings.Contains(text, fmt.Sprintf("firing %d", got[0].ID)) {
				t.Fatalf("one firing's message:\n%s", text)
			}
		}
		if d := got[0].Deliveries[0]; d.Attempts != 2 || d.Grouped != 1 {
			t.Fatalf("delivery %+v", d)
		}
		if v := metric(t, e, "tapdmirror_alert_notification_failures_total", "ops"); v != 1 {
			t.Fatalf("failures %v", v)
		}
	})
}

// TestWebhookNotifier: JSON firings with the HMAC signature header and an
// idempotency key of the first and last firing; a 503 is retried.
func TestWebhookNotifier(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		rc := newReceiver(t, answer{503, `busy`}, answer{204, ``})
		burst(t, s, 4)
		e, got := deliverAll(t, s, config.Notifier{Kind: "webhook", URL: rc.srv.URL + "/hooks/alerts", Secret: "wh-secret"}, 4)
		reqs := rc.requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests", len(reqs))
		}
		first, last := got[len(got)-1].ID, got[0].ID // got is newest first
		for _, r := range reqs {
			checkPost(t, r, "/hooks/alerts")
			mac := hmac.New(sha256.New, []byte("wh-secret"))
			mac.Write(r.Body)
			if r.Header.Get("X-Tapd-Mirror-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
				t.Fatalf("signature %q", r.Header.Get("X-Tapd-Mirror-Signature"))
			}
			if k := r.Header.Get("Idempotency-Key"); k != fmt.Sprintf("alert-ops-%d-%d", first, last) {
				t.Fatalf("idempotency key %q", k)
			}
			var m alert.WebhookMessage
			if err := json.Unmarshal(r.Body, &m); err != nil {
				t.Fatal(err)
			}
			if m.Source != "tapd-mirror" || len(m.Firings) != 4 || m.Firings[0].ID != first || m.Firings[0].Rule != "every-download" ||
				m.Firings[0].Key != "user00" || m.Firings[0].Count != 1 || m.Firings[0].FirstRecordID == 0 || m.Firings[0].Search != "action=download&user=user00" {
				t.Fatalf("message %+v", m)
			}
		}
		checkGrouped(t, e, got, 4)
	})
}

// TestNotifierErrorsHideTheKey: a failing robot's or webhook's error, as
// stored on the delivery, names its URL with the key masked (a webhook's
// path after its first segment: Slack and the like keep the secret there).
func TestNotifierErrorsHideTheKey(t *testing.T) {
	for _, c := range []struct {
		kind, path string
		answer     answer
		shown      []string
	}{
		{"wecom", "/cgi-bin/webhook/send?key=s3cr3t-robot-key", answer{200, `{"errcode":93000,"errmsg":"invalid webhook url"}`}, []string{"key=xxxxx", "errcode 93000"}},
		{"webhook", "/services/T0001/B0002/s3cr3t-hook-token", answer{404, `no_service`}, []string{"/services/…: answered 404", "no_service"}},
	} {
		t.Run(c.kind, func(t *testing.T) {
			storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
				rc := newReceiver(t, c.answer)
				burst(t, s, 1)
				e, err := alert.New(alert.Options{Store: s, Rules: []config.AlertRule{everyDownload}, Location: shanghai, Now: func() time.Time { return now },
					Notifiers: []config.Notifier{{Name: "ops", Kind: c.kind, URL: rc.srv.URL + c.path, PerMinute: 600}},
					Poll:      10 * time.Millisecond, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); e.Run(ctx) }()
				defer func() { cancel(); <-done }()
				for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					got := firings(t, s)
					if len(got) == 1 && got[0].Deliveries[0].Attempts >= 2 {
						if v := metric(t, e, "tapdmirror_alert_notification_failures_total", "ops"); v < 2 {
							t.Fatalf("failures metric %v after 2 failed attempts", v)
						}
						d := got[0].Deliveries[0]
						if d.Status != storage.DeliveryPending || strings.Contains(d.LastError, "s3cr3t") {
							t.Fatalf("delivery %+v", d)
						}
						for _, w := range c.shown {
							if !strings.Contains(d.LastError, w) {
								t.Fatalf("last error %q lacks %q", d.LastError, w)
							}
						}
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("no failed attempts recorded: %+v", got)
					}
				}
			})
		})
	}
}

// TestHostileKeysReachEveryRobotEscaped: usernames built to inject a link,
// a heading (CR from TAPD), a tag or a mention arrive in each vendor's
// exact body as plain text: backslashes doubled, brackets escaped, no CR,
// no "<" and no "@" left; the webhook's JSON keeps the key as it was.
func TestHostileKeysReachEveryRobotEscaped(t *testing.T) {
	link := `\[Security notice: re-enter your TAPD password\](https://evil.example/login)`
	heading := "eve\r# fake heading\r<at id=all></at> <@zhangsan> @all"
	want := []string{`\\\[Security notice: re-enter your TAPD password\\\]\(https://evil.example/login\)`,
		"eve # fake heading ＜at id=all＞＜/at＞ ＜＠zhangsan＞ ＠all"}
	for _, kind := range []string{"wecom", "dingtalk", "feishu", "webhook"} {
		t.Run(kind, func(t *testing.T) {
			storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
				ok := `{"errcode":0,"errmsg":"ok"}`
				if kind == "feishu" {
					ok = `{"code":0,"msg":"success","data":{}}`
				}
				rc := newReceiver(t, answer{200, ok})
				store(t, s, rec(link, "download", "10.0.0.1", now.Add(-time.Minute)), rec(heading, "download", "10.0.0.1", now.Add(-time.Minute)))
				deliverAll(t, s, config.Notifier{Kind: kind, URL: rc.srv.URL + "/hook/robot-token-0001"}, 2)
				reqs := rc.requests()
				if len(reqs) != 1 {
					t.Fatalf("%d requests, want 1", len(reqs))
				}
				var m struct {
					Markdown struct{ Content, Title, Text string } `json:"markdown"`
					Card     struct {
						Elements []struct{ Content string } `json:"elements"`
					} `json:"card"`
					alert.WebhookMessage
				}
				if err := json.Unmarshal(reqs[0].Body, &m); err != nil {
					t.Fatal(err)
				}
				text := map[string]string{"wecom": m.Markdown.Content, "dingtalk": m.Markdown.Text, "webhook": m.Text}[kind]
				if kind == "feishu" && len(m.Card.Elements) == 1 {
					text = m.Card.Elements[0].Content
				}
				for _, w := range want {
					if !strings.Contains(text, w) {
						t.Errorf("the text lacks %q:\n%s", w, text)
					}
				}
				for _, bad := range []string{"\r", "<", "@"} {
					if strings.Contains(text, bad) {
						t.Errorf("the text holds %q:\n%s", bad, text)
					}
				}
				for i := 0; i < len(text); i++ { // no bracket outside an escape: no link
					switch text[i] {
					case '\\':
						i++
					case '[', ']':
						t.Errorf("an unescaped %q at %d:\n%s", text[i], i, text)
					}
				}
				if strings.Count(text, "\n") != 2 { // title, time span, the rule's line
					t.Errorf("%d line breaks, want 2:\n%s", strings.Count(text, "\n"), text)
				}
				if kind == "webhook" {
					keys := map[string]bool{}
					for _, f := range m.Firings {
						keys[f.Key] = true
					}
					if len(keys) != 2 || !keys[link] || !keys[heading] {
						t.Errorf("webhook keys %v, want them as stored", keys)
					}
				}
			})
		})
	}
}
