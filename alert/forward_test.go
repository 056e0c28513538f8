package alert_test

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
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/alert"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// alertLines reads an NDJSON body of alert events strictly: no field
// beyond forward.Event's, no index.
func alertLines(t *testing.T, body []byte) []forward.Event {
	t.Helper()
	var out []forward.Event
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(`"index"`)) {
			t.Fatalf("an alert line with an index: %s", sc.Bytes())
		}
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var e forward.Event
		if err := dec.Decode(&e); err != nil || e.Type != "alert" || e.Alert == nil {
			t.Fatalf("line %s: %v", sc.Bytes(), err)
		}
		out = append(out, e)
	}
	return out
}

// TestForwardNotifierSendsAlertEvents: a notifier of kind forward sends a
// burst as one batch of alert events through the named webhook
// destination: its URL and HMAC secret, NDJSON, the idempotency key of the
// first and last firing id, each alert carrying its firing; a 503 is
// retried like any notifier's failure and the deliveries end "sent".
func TestForwardNotifierSendsAlertEvents(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		rc := newReceiver(t, answer{503, `busy`}, answer{204, ``})
		burst(t, s, 3)
		siem := config.Forward{Name: "siem", Kind: "webhook", URL: rc.srv.URL + "/ingest", Secret: "siem-s3cret"}
		e, got := deliverAll(t, s, config.Notifier{Kind: "forward", Destination: "siem"}, 3, siem)
		reqs := rc.requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests, want the refused one and its retry", len(reqs))
		}
		first, last := got[len(got)-1].ID, got[0].ID // got is newest first
		for _, r := range reqs {
			mac := hmac.New(sha256.New, []byte("siem-s3cret"))
			mac.Write(r.Body)
			if r.Method != http.MethodPost || r.Path != "/ingest" || r.Header.Get("Content-Type") != "application/x-ndjson" ||
				r.Header.Get(forward.SignatureHeader) != "sha256="+hex.EncodeToString(mac.Sum(nil)) ||
				r.Header.Get(forward.IdempotencyHeader) != fmt.Sprintf("alert-ops-%d-%d", first, last) {
				t.Fatalf("request %s %s %v", r.Method, r.Path, r.Header)
			}
			events := alertLines(t, r.Body)
			if len(events) != 3 {
				t.Fatalf("%d alert events, want the burst of 3 in one batch", len(events))
			}
			for i, ev := range events {
				f := got[len(got)-1-i] // oldest first, as sent
				a := ev.Alert
				if a.ID != f.ID || a.Rule != "every-download" || a.Key != f.Key || a.Condition != "every" || a.Count != 1 ||
					a.FirstRecordID != f.FirstRecordID || a.LastRecordID != f.LastRecordID || a.LogIndex != f.LogIndex ||
					a.WindowStart != f.WindowStart.Unix() || a.FiredAt != now.Unix() || ev.Time != now.Unix() || a.URL != "" {
					t.Fatalf("alert %+v for firing %+v", a, f)
				}
			}
		}
		checkGrouped(t, e, got, 3)
	})
}

// TestForwardNotifierRetriesADownReceiver: while nothing listens at the
// destination's address the firing stays pending with the error recorded
// and the attempts counted; once a receiver listens there it is delivered
// and its delivery is "sent".
func TestForwardNotifierRetriesADownReceiver(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // down: connections are refused
		burst(t, s, 1)
		e, err := alert.New(alert.Options{Store: s, Rules: []config.AlertRule{everyDownload}, Location: shanghai, Now: func() time.Time { return now },
			Notifiers: []config.Notifier{{Name: "ops", Kind: "forward", Destination: "siem", PerMinute: 600}},
			Forward:   []config.Forward{{Name: "siem", Kind: "webhook", URL: "http://" + addr + "/ingest", Secret: "siem-s3cret"}},
			Poll:      10 * time.Millisecond, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); e.Run(ctx) }()
		defer func() { cancel(); <-done }()
		delivery := func() storage.AlertDelivery {
			got := firings(t, s)
			if len(got) != 1 || len(got[0].Deliveries) != 1 {
				return storage.AlertDelivery{}
			}
			return got[0].Deliveries[0]
		}
		waitUntil(t, "failed attempts recorded", func() bool { return delivery().Attempts >= 2 })
		if d := delivery(); d.Status != storage.DeliveryPending || !strings.Contains(d.LastError, "alerts") ||
			!strings.Contains(d.LastError, "forward destination siem") || strings.Contains(d.LastError, "siem-s3cret") {
			t.Fatalf("delivery while down %+v", d)
		}
		var mu sync.Mutex
		var bodies [][]byte
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies = append(bodies, body)
			mu.Unlock()
		}))
		if srv.Listener, err = net.Listen("tcp", addr); err != nil {
			t.Skipf("the port was taken meanwhile: %v", err)
		}
		srv.Start()
		defer srv.Close()
		waitUntil(t, "the delivery sent", func() bool { return delivery().Status == storage.DeliverySent })
		if d := delivery(); d.LastError != "" || d.SentAt.IsZero() || d.Attempts < 3 {
			t.Fatalf("delivery once up %+v", d)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(bodies) != 1 {
			t.Fatalf("%d requests once up, want 1", len(bodies))
		}
		if ev := alertLines(t, bodies[0]); len(ev) != 1 || ev[0].Alert.ID != firings(t, s)[0].ID {
			t.Fatalf("received %s", bodies[0])
		}
	})
}

// TestForwardNotifierNeedsItsDestination: a notifier naming a destination
// not given to the engine is refused at start, naming both.
func TestForwardNotifierNeedsItsDestination(t *testing.T) {
	_, err := alert.New(alert.Options{Notifiers: []config.Notifier{{Name: "siem-alerts", Kind: "forward", Destination: "siem", PerMinute: 600}}})
	if err == nil || !strings.Contains(err.Error(), "siem-alerts") || !strings.Contains(err.Error(), `"siem"`) {
		t.Fatalf("New = %v", err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}
