package forward_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// receiver is an in-process webhook endpoint that checks every request the
// way a SIEM's ingest would, and can fail on demand.
type receiver struct {
	t      *testing.T
	secret string
	mu     sync.Mutex
	// answer decides request n's fate: its status, and whether its events
	// are kept (a 500 after keeping them is an ack lost on the way back).
	answer   func(n int) (status int, keep bool)
	requests int
	got      []forward.Event
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rc.t.Errorf("reading body: %v", err)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-ndjson" {
		rc.t.Errorf("%s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
	}
	mac := hmac.New(sha256.New, []byte(rc.secret))
	mac.Write(body)
	if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); r.Header.Get("X-Tapd-Mirror-Signature") != want {
		rc.t.Errorf("signature %q, want %q", r.Header.Get("X-Tapd-Mirror-Signature"), want)
	}
	events := parseLines(rc.t, body)
	if len(events) == 0 {
		rc.t.Errorf("empty batch")
		return
	}
	if want := fmt.Sprintf("%d-%d", events[0].Index, events[len(events)-1].Index); r.Header.Get("Idempotency-Key") != want {
		rc.t.Errorf("Idempotency-Key %q, want %q", r.Header.Get("Idempotency-Key"), want)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.requests++
	status, keep := http.StatusOK, true
	if rc.answer != nil {
		status, keep = rc.answer(rc.requests)
	}
	if keep {
		rc.got = append(rc.got, events...)
	}
	w.WriteHeader(status)
}

func (rc *receiver) events() []forward.Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]forward.Event(nil), rc.got...)
}

// checkDelivery: every index below size arrived; first arrivals are in log
// order; a duplicate only repeats an index already delivered.
func checkDelivery(t *testing.T, got []forward.Event, size int64) (dups int) {
	t.Helper()
	next := int64(0) // the next index never seen
	for _, e := range got {
		switch {
		case e.Index == next:
			next++
		case e.Index < next:
			dups++
		default:
			t.Fatalf("index %d arrived before %d: out of order or lost", e.Index, next)
		}
	}
	if next != size {
		t.Fatalf("delivered up to index %d of %d", next, size)
	}
	return dups
}

func TestWebhookDeliversSignedNDJSONOfEveryKind(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 5)
		size := headSize(t, s)
		rc := &receiver{t: t, secret: "hmac-key"}
		srv := httptest.NewServer(rc)
		defer srv.Close()
		fw, err := forward.New(fast(forward.Options{Store: s, Destinations: []config.Forward{
			{Name: "siem", Kind: "webhook", URL: srv.URL + "/ingest?key=abc", Secret: "hmac-key", BatchSize: 3}}}))
		if err != nil {
			t.Fatal(err)
		}
		stop := start(fw)
		waitFor(t, "every event acknowledged", func() bool {
			st, err := fw.Status(context.Background())
			return err == nil && st[0].Cursor == size
		})
		stop()
		got := rc.events()
		if dups := checkDelivery(t, got, size); dups != 0 {
			t.Errorf("%d duplicates with a receiver that never failed", dups)
		}
		kinds := map[string]int{}
		for _, e := range got {
			kinds[e.Type]++
		}
		if kinds["record"] != 6 || kinds["delete"] != 1 || kinds["hold"] != 1 {
			t.Fatalf("kinds %v, want 6 records, 1 delete, 1 hold", kinds)
		}
		r := got[0].Record
		if r == nil || r.SourceID != "1000" || r.Source != "tapd" || r.WorkspaceID != "20001" || r.IP != "10.0.0.7" ||
			r.UA != "Mozilla/5.0" || r.URL != "https://www.tapd.cn/x" || r.Object != "附件" || r.Title != "spec-0.pdf" ||
			r.ActionType != "download" || r.Username != "alice" || r.Timestamp != 1_700_000_000 || r.ID == 0 {
			t.Fatalf("first record %+v", r)
		}
		del, hold := got[size-2], got[size-1]
		if del.Type != "delete" || del.RecordID == 0 || del.Prev != 5 || hold.Type != "hold" || hold.Hold == nil || hold.Hold.Name != "case-1" || hold.Token != "admin" {
			t.Fatalf("delete %+v, hold %+v", del, hold)
		}
		st, err := fw.Status(context.Background())
		if err != nil || len(st) != 1 || st[0].Cursor != size || st[0].LagEvents != 0 || st[0].LastSuccess == nil || st[0].Failing {
			t.Fatalf("status %+v %v", st, err)
		}
		if cur, err := s.ForwardCursor(context.Background(), "siem"); err != nil || cur.Next != size {
			t.Fatalf("stored cursor %+v %v, want %d", cur, err, size)
		}
	})
}

// TestWebhookLosesNothingWhileTheReceiverIsDown: refused connections, 503s,
// 429s, acks lost on the way back and a restart of the mirror mid-stream:
// every event arrives, in order, duplicates only of indexes delivered.
func TestWebhookLosesNothingWhileTheReceiverIsDown(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 40)
		size := headSize(t, s)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // down: connections are refused
		rc := &receiver{t: t, secret: "k", answer: func(n int) (int, bool) {
			switch n % 4 {
			case 1:
				return http.StatusInternalServerError, true // kept, ack lost: a duplicate follows
			case 2:
				return http.StatusServiceUnavailable, false
			case 3:
				return http.StatusTooManyRequests, false
			}
			return http.StatusOK, true
		}}
		now := time.Unix(1_800_000_000, 0)
		var clock sync.Mutex
		dest := []config.Forward{{Name: "siem", Kind: "webhook", URL: "http://" + addr + "/in", Secret: "k", BatchSize: 7,
			DeadAfter: config.Duration{Duration: time.Hour}}}
		opts := fast(forward.Options{Store: s, Destinations: dest, Now: func() time.Time { clock.Lock(); defer clock.Unlock(); return now }})
		fw, err := forward.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		stop := start(fw)
		status := func() forward.Status {
			st, err := fw.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return st[0]
		}
		waitFor(t, "a failure", func() bool { return status().LastError != "" })
		if st := status(); st.Failing || st.FailingSince == nil || st.Cursor != 0 || st.LagEvents != size {
			t.Fatalf("status while down %+v", st)
		}
		clock.Lock()
		now = now.Add(2 * time.Hour) // past dead_after
		clock.Unlock()
		waitFor(t, "failing", func() bool { return status().Failing })
		if strings.Contains(status().LastError, "?") {
			t.Errorf("last error shows the URL's query: %s", status().LastError)
		}

		ln, err = net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("port %s taken meanwhile: %v", addr, err)
		}
		srv := httptest.NewUnstartedServer(rc)
		srv.Listener = ln
		srv.Start()
		defer srv.Close()
		waitFor(t, "some acknowledged deliveries", func() bool { return status().Cursor > 0 })
		stop() // the mirror stops mid-stream
		if cur, err := s.ForwardCursor(context.Background(), "siem"); err != nil || cur.Next == 0 || cur.Next != status().Cursor {
			t.Fatalf("cursor after the stop %+v %v", cur, err)
		}
		fw, err = forward.New(opts) // and starts again from its cursor
		if err != nil {
			t.Fatal(err)
		}
		stop = start(fw)
		waitFor(t, "catching up", func() bool { st := status(); return st.Cursor == size })
		stop()
		got := rc.events()
		if dups := checkDelivery(t, got, size); dups == 0 {
			t.Errorf("no duplicates although acks were lost")
		}
		if st := status(); st.Failing || st.FailingSince != nil || st.LastError != "" || st.LagEvents != 0 {
			t.Fatalf("status after recovery %+v", st)
		}
	})
}

// TestFilterSelectsRecordsButPassesDeletionsAndHolds: a filtered-out event
// is not sent, yet the cursor moves past it; deletions and holds always go.
func TestFilterSelectsRecordsButPassesDeletionsAndHolds(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 3) // alice's downloads, bob's login (deleted), a hold
		size := headSize(t, s)
		rc := &receiver{t: t, secret: "k"}
		srv := httptest.NewServer(rc)
		defer srv.Close()
		fw, err := forward.New(fast(forward.Options{Store: s, Destinations: []config.Forward{{Name: "siem", Kind: "webhook",
			URL: srv.URL, Secret: "k", Filter: config.ForwardFilter{Source: "tapd", Username: "alice", Object: "attachment"}}}}))
		if err != nil {
			t.Fatal(err)
		}
		stop := start(fw)
		waitFor(t, "the cursor at the log's end", func() bool {
			st, err := fw.Status(context.Background())
			return err == nil && st[0].Cursor == size
		})
		stop()
		var types []string
		for _, e := range rc.events() {
			if e.Record != nil && e.Record.Username != "alice" {
				t.Errorf("filtered-out record sent: %+v", e.Record)
			}
			types = append(types, e.Type)
		}
		if got := strings.Join(types, ","); got != "record,record,record,delete,hold" {
			t.Fatalf("sent %s", got)
		}
	})
}

// TestFailingSinceSurvivesARestart: dead_after counts from the first
// failure, not from the last start, so a destination down for days is
// failing at once after a restart, and still delivers from its cursor.
func TestFailingSinceSurvivesARestart(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 2)
		ctx := context.Background()
		now := time.Unix(1_800_000_000, 0).UTC()
		since := now.Add(-48 * time.Hour)
		if err := s.SaveForwardCursor(ctx, storage.ForwardCursor{Name: "siem", Next: 1, LastError: "old", FailingSince: since}); err != nil {
			t.Fatal(err)
		}
		fw, err := forward.New(fast(forward.Options{Store: s, Now: func() time.Time { return now }, Destinations: []config.Forward{
			{Name: "siem", Kind: "webhook", URL: "http://127.0.0.1:1/in", Secret: "k"}}}))
		if err != nil {
			t.Fatal(err)
		}
		stop := start(fw)
		waitFor(t, "a new failure", func() bool {
			st, err := fw.Status(ctx)
			return err == nil && st[0].LastError != "old" && st[0].LastError != ""
		})
		stop()
		st, err := fw.Status(ctx)
		if err != nil || !st[0].Failing || st[0].FailingSince == nil || !st[0].FailingSince.Equal(since) || st[0].Cursor != 1 {
			t.Fatalf("status %+v %v", st, err)
		}
	})
}
