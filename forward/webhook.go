package forward

import (
	"bytes"
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
	// index: a batch sent again carries the same value.
	IdempotencyHeader = "Idempotency-Key"
)

// webhook POSTs NDJSON batches; a 2xx answer is the ack.
type webhook struct {
	url, shown string // shown: the URL with its secrets masked, for errors
	secret     []byte
	client     *http.Client
}

func newWebhook(f config.Forward) *webhook {
	shown, _ := config.RedactDestinationURL(f.URL)
	return &webhook{url: f.URL, shown: shown, secret: []byte(f.Secret), client: &http.Client{Timeout: time.Minute}}
}

// Sign is the signature header's value for body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (w *webhook) Deliver(ctx context.Context, b Batch) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(b.Body))
	if err != nil {
		return fmt.Errorf("webhook %s: %w", w.shown, w.scrub(err))
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set(SignatureHeader, Sign(w.secret, b.Body))
	req.Header.Set(IdempotencyHeader, strconv.FormatInt(b.First, 10)+"-"+strconv.FormatInt(b.Last, 10))
	req.Header.Set("User-Agent", "tapd-mirror-forward")
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("posting events %d-%d to %s: %w", b.First, b.Last, w.shown, w.scrub(err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	if resp.StatusCode/100 != 2 {
		// 5xx, 429 and network errors are the receiver's to fix; any other
		// answer is too, and is retried as well: skipping would lose events.
		return fmt.Errorf("posting events %d-%d to %s: answered %s", b.First, b.Last, w.shown, resp.Status)
	}
	return nil
}

// scrub replaces the URL net/http puts in its errors (query secrets and
// all) with the masked one.
func (w *webhook) scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (w *webhook) Close() error { return nil }
