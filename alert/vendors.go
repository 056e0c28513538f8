package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tapd-mirror/tapd-mirror/forward"
)

// Content limits: WeCom's markdown content is at most 4096 bytes;
// DingTalk and Feishu take a request body of up to 20 KB, so their text is
// kept well inside it.
const (
	wecomContentMax = 4096
	robotTextMax    = 16000
)

// Webhook request headers (README "Alerts").
const (
	// SignatureHeader is "sha256=" and the hex HMAC-SHA256 of the body
	// keyed with the notifier's secret (the same as forwarding's webhook).
	SignatureHeader = "X-Tapd-Mirror-Signature"
	// IdempotencyHeader is "alert-NOTIFIER-FIRST-LAST", the first and last
	// firing id the message carries: a message sent again has the same.
	IdempotencyHeader = "Idempotency-Key"
)

// httpSender is what every kind shares: a JSON POST to the configured URL.
type httpSender struct {
	client *http.Client
	url    string
	shown  string // the URL with its secrets masked, for errors
	secret string
	now    func() time.Time
}

// post sends body to target and returns the answer's body (at most 64 KiB);
// a status other than 2xx is an error too (429 a rate limit), returned
// with the body, in which some vendors explain it.
func (h httpSender) post(ctx context.Context, target string, body []byte, header http.Header) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("posting to %s: %w", h.shown, unwrapURL(err))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "tapd-mirror-alerts")
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("posting to %s: %w", h.shown, unwrapURL(err))
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return nil, fmt.Errorf("posting to %s: answered %s: %w", h.shown, resp.Status, errRateLimited)
	case resp.StatusCode/100 != 2:
		return answer, fmt.Errorf("posting to %s: answered %s: %s", h.shown, resp.Status, clip(answer))
	}
	return answer, nil
}

// unwrapURL drops the URL net/http puts in its errors (with the robot's
// key in it); the caller names the masked one.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// wecom is a WeCom (企业微信) group robot: a markdown message; the answer
// {"errcode":0,"errmsg":"ok"} accepts it, errcode 45009 is its rate limit
// (20 messages a minute per robot).
type wecom struct{ httpSender }

func (w wecom) send(ctx context.Context, m message) error {
	body, _ := json.Marshal(map[string]any{"msgtype": "markdown", "markdown": map[string]string{"content": m.text(wecomContentMax)}})
	answer, err := w.post(ctx, w.url, body, nil)
	if err != nil {
		return err
	}
	return errcodeAnswer("WeCom", w.shown, answer, 45009)
}

// errcodeAnswer reads WeCom's and DingTalk's {"errcode":N,"errmsg":"…"}.
func errcodeAnswer(vendor, shown string, answer []byte, rateLimit int) error {
	var a struct {
		Errcode *int   `json:"errcode"`
		Errmsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(answer, &a); err != nil || a.Errcode == nil {
		return fmt.Errorf("%s robot %s: the answer is not {\"errcode\":…}: %s", vendor, shown, clip(answer))
	}
	switch *a.Errcode {
	case 0:
		return nil
	case rateLimit:
		return fmt.Errorf("%s robot %s: errcode %d %s: %w", vendor, shown, *a.Errcode, a.Errmsg, errRateLimited)
	}
	return fmt.Errorf("%s robot %s: errcode %d: %s", vendor, shown, *a.Errcode, a.Errmsg)
}

// dingtalk is a DingTalk (钉钉) custom robot: a markdown message; with a
// signing secret, timestamp (Unix milliseconds) and sign (the base64
// HMAC-SHA256 of timestamp+"\n"+secret keyed with the secret) are added to
// the query. errcode 130101 is its rate limit (20 a minute per robot).
type dingtalk struct{ httpSender }

// DingTalkSign is DingTalk's sign for timestamp (milliseconds) and secret,
// before URL encoding.
func DingTalkSign(timestamp int64, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(timestamp, 10) + "\n" + secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func (d dingtalk) send(ctx context.Context, m message) error {
	target := d.url
	if d.secret != "" {
		ts := d.now().UnixMilli()
		u, err := url.Parse(d.url)
		if err != nil {
			return fmt.Errorf("DingTalk robot %s: the url does not parse", d.shown)
		}
		q := u.Query()
		q.Set("timestamp", strconv.FormatInt(ts, 10))
		q.Set("sign", DingTalkSign(ts, d.secret))
		u.RawQuery = q.Encode()
		target = u.String()
	}
	body, _ := json.Marshal(map[string]any{"msgtype": "markdown", "markdown": map[string]string{"title": m.Title, "text": m.text(robotTextMax)}})
	answer, err := d.post(ctx, target, body, nil)
	if err != nil {
		return err
	}
	return errcodeAnswer("DingTalk", d.shown, answer, 130101)
}

// feishu is a Feishu (飞书) custom bot: an interactive card holding the
// markdown; with a signing secret the body carries timestamp (Unix
// seconds) and sign (the base64 HMAC-SHA256 of empty data keyed with
// timestamp+"\n"+secret). The answer {"code":0,…} accepts it; 11232 and
// 9499 are its rate limits (100 a minute, 5 a second per bot).
type feishu struct{ httpSender }

// FeishuSign is Feishu's sign for timestamp (seconds) and secret.
func FeishuSign(timestamp int64, secret string) string {
	mac := hmac.New(sha256.New, []byte(strconv.FormatInt(timestamp, 10)+"\n"+secret))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func (f feishu) send(ctx context.Context, m message) error {
	msg := map[string]any{"msg_type": "interactive", "card": map[string]any{
		"header":   map[string]any{"title": map[string]string{"tag": "plain_text", "content": m.Title}, "template": "red"},
		"elements": []any{map[string]string{"tag": "markdown", "content": m.text(robotTextMax)}},
	}}
	if f.secret != "" {
		ts := f.now().Unix()
		msg["timestamp"], msg["sign"] = strconv.FormatInt(ts, 10), FeishuSign(ts, f.secret)
	}
	body, _ := json.Marshal(msg)
	answer, err := f.post(ctx, f.url, body, nil)
	if err != nil && !bytes.HasPrefix(answer, []byte("{")) {
		return err
	}
	// Feishu answers its rate limit with a 400 and a code: read it either way.
	var a struct {
		Code       *int   `json:"code"`
		Msg        string `json:"msg"`
		StatusCode *int   `json:"StatusCode"` // the older answer's field
	}
	if jerr := json.Unmarshal(answer, &a); jerr != nil || (a.Code == nil && a.StatusCode == nil) {
		if err != nil {
			return err
		}
		return fmt.Errorf("Feishu bot %s: the answer is not {\"code\":…}: %s", f.shown, clip(answer))
	}
	code := a.Code
	if code == nil {
		code = a.StatusCode
	}
	switch *code {
	case 0:
		return err // a 2xx, or a status error with code 0
	case 11232, 9499:
		return fmt.Errorf("Feishu bot %s: code %d %s: %w", f.shown, *code, a.Msg, errRateLimited)
	}
	return fmt.Errorf("Feishu bot %s: code %d: %s", f.shown, *code, a.Msg)
}

// webhook POSTs the firings as JSON; a 2xx accepts them.
type webhook struct {
	httpSender
	name string
}

// WebhookFiring is one firing in a webhook message.
type WebhookFiring struct {
	ID            int64     `json:"id"`
	Rule          string    `json:"rule"`
	Key           string    `json:"key"`
	Condition     string    `json:"condition"`
	WindowStart   time.Time `json:"window_start"`
	WindowEnd     time.Time `json:"window_end"`
	Count         int64     `json:"count"`
	FirstRecordID int64     `json:"first_record_id"`
	LastRecordID  int64     `json:"last_record_id"`
	LogIndex      int64     `json:"log_index"`
	FiredAt       time.Time `json:"fired_at"`
	Search        string    `json:"search"` // console search parameters of its records, without times
}

// WebhookMessage is a webhook message's body.
type WebhookMessage struct {
	Source  string          `json:"source"` // "tapd-mirror"
	Title   string          `json:"title"`
	Text    string          `json:"text"` // the markdown the robots get
	Firings []WebhookFiring `json:"firings"`
}

// Sign is the signature header's value for body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (w webhook) send(ctx context.Context, m message) error {
	out := WebhookMessage{Source: "tapd-mirror", Title: m.Title, Text: m.text(0), Firings: make([]WebhookFiring, len(m.Firings))}
	for i, f := range m.Firings {
		out.Firings[i] = WebhookFiring{ID: f.ID, Rule: f.Rule, Key: f.Key, Condition: f.Condition, WindowStart: f.WindowStart,
			WindowEnd: f.WindowEnd, Count: f.Count, FirstRecordID: f.FirstRecordID, LastRecordID: f.LastRecordID,
			LogIndex: f.LogIndex, FiredAt: f.FiredAt, Search: f.Search}
	}
	body, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("encoding alert message: %w", err)
	}
	h := http.Header{}
	if w.secret != "" {
		h.Set(SignatureHeader, Sign([]byte(w.secret), body))
	}
	h.Set(IdempotencyHeader, m.idempotencyKey(w.name))
	_, err = w.post(ctx, w.url, body, h)
	return err
}

// forwardSender sends the firings as alert events through a forward
// destination (forward.AlertSender), one batch per message; the message's
// markdown is for people and is not sent.
type forwardSender struct {
	s    *forward.AlertSender
	e    *Engine
	name string // the notifier's
}

func (f forwardSender) send(ctx context.Context, m message) error {
	alerts := make([]forward.Alert, len(m.Firings))
	for i, fr := range m.Firings {
		alerts[i] = forward.Alert{ID: fr.ID, Rule: fr.Rule, Key: fr.Key, Condition: fr.Condition, Count: fr.Count,
			WindowStart: fr.WindowStart.Unix(), WindowEnd: fr.WindowEnd.Unix(), FirstRecordID: fr.FirstRecordID,
			LastRecordID: fr.LastRecordID, LogIndex: fr.LogIndex, FiredAt: fr.FiredAt.Unix(), URL: f.e.link(fr)}
	}
	return f.s.Send(ctx, m.idempotencyKey(f.name), alerts)
}

// idempotencyKey is "alert-NOTIFIER-FIRST-LAST" (IdempotencyHeader): the
// same for a message sent again, apart from other notifiers' messages.
func (m message) idempotencyKey(notifier string) string {
	return fmt.Sprintf("alert-%s-%d-%d", notifier, m.Firings[0].ID, m.Firings[len(m.Firings)-1].ID)
}

func (f forwardSender) close() error { return f.s.Close() }
