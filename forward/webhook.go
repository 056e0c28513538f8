package forward

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// Webhook request headers (README "Forwarding").
const (
	// SignatureHeader is "sha256=" and the hex HMAC-SHA256 of the body
	// keyed with the destination's secret.
	SignatureHeader = "X-Tapd-Mirror-Signature"
	// IdempotencyHeader is "FIRST-LAST", the batch's first and last log
	// index: a batch sent again carries the same value. An alert batch (a
	// forward notifier's) has its notifier's key (alert.IdempotencyHeader).
	IdempotencyHeader = "Idempotency-Key"
)

// webhook POSTs NDJSON batches; a 2xx answer is the ack.
type webhook struct {
	url, shown string // shown: the URL with its secrets masked, for errors
	secret     []byte
	format     string
	gzip       bool
	client     *http.Client
}

func newWebhook(f config.Forward) *webhook {
	shown, _ := config.RedactForwardURL(f.Kind, f.URL)
	return &webhook{url: f.URL, shown: shown, secret: []byte(f.Secret), format: f.Format, gzip: f.Gzip,
		client: &http.Client{Timeout: time.Minute}}
}

// Sign is the signature header's value for body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (w *webhook) Deliver(ctx context.Context, b Batch) error {
	body, err := ndjson(w.format, b)
	if err != nil {
		return err
	}
	if w.gzip {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(body) // a bytes.Buffer does not fail
		if err := zw.Close(); err != nil {
			return fmt.Errorf("compressing %s: %w", b.span(), err)
		}
		body = z.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.shown, scrubURL(err))
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if w.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	// Over the bytes sent (compressed, with gzip): the receiver checks
	// them before it decompresses anything.
	req.Header.Set(SignatureHeader, Sign(w.secret, body))
	key := b.key // an alert batch's: firing ids, apart from log indexes
	if key == "" {
		key = strconv.FormatInt(b.First, 10) + "-" + strconv.FormatInt(b.Last, 10)
	}
	req.Header.Set(IdempotencyHeader, key)
	req.Header.Set("User-Agent", "tapd-mirror-forward")
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("posting %s to %s: %w", b.span(), w.shown, scrubURL(err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	if resp.StatusCode/100 != 2 {
		// 5xx, 429 and network errors are the receiver's to fix; any other
		// answer is too, and is retried as well: skipping would lose events.
		return fmt.Errorf("posting %s to %s: answered %s", b.span(), w.shown, resp.Status)
	}
	return nil
}

// scrubURL drops the URL net/http puts in its errors (query secrets and
// all); callers name the masked one.
func scrubURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (w *webhook) Close() error { return nil }
