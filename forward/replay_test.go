package forward_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// TestReplayResendsFromTheIndexWhileRunning: a replay written to the
// database (as another process does) moves the running forwarder back:
// the events from that index arrive again, in order.
func TestReplayResendsFromTheIndexWhileRunning(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 6)
		size := headSize(t, s)
		rc := &receiver{t: t, secret: "k"}
		srv := httptest.NewServer(rc)
		defer srv.Close()
		fw, err := forward.New(fast(forward.Options{Store: s, Destinations: []config.Forward{
			{Name: "siem", Kind: "webhook", URL: srv.URL, Secret: "k", BatchSize: 3}}}))
		if err != nil {
			t.Fatal(err)
		}
		stop := start(fw)
		defer stop()
		status := func() forward.Status { st, _ := fw.Status(context.Background()); return st[0] }
		ctx := context.Background()
		waitFor(t, "everything delivered and recorded", func() bool {
			cur, err := s.ForwardCursor(ctx, "siem")
			return err == nil && cur.Next == size
		})
		if _, err := forward.ReplayFrom(ctx, s, fw.Names(), "other", 0, time.Time{}); !errors.Is(err, forward.ErrUnknownDestination) {
			t.Fatalf("unknown destination: %v", err)
		}
		var bad *forward.ReplayError
		if _, err := forward.ReplayFrom(ctx, s, fw.Names(), "siem", size+1, time.Time{}); !errors.As(err, &bad) {
			t.Fatalf("past the cursor: %v", err)
		}
		rep, err := forward.ReplayFrom(ctx, s, fw.Names(), "siem", 2, time.Time{})
		if err != nil || rep.From != 2 || rep.Previous != size {
			t.Fatalf("replay %+v %v", rep, err)
		}
		waitFor(t, "the replay delivered", func() bool { return int64(len(rc.events())) == 2*size-2 && status().Cursor == size })
		got := rc.events()
		for i, e := range got[size:] {
			if e.Index != int64(i)+2 {
				t.Fatalf("replayed event %d has index %d", i, e.Index)
			}
		}
	})
}

// TestLagSecondsIsTheAgeOfTheOldestUndelivered: with the receiver down,
// status and the metric give the waiting event's age by the forwarder's
// clock; caught up, 0.
func TestLagSecondsIsTheAgeOfTheOldestUndelivered(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 2)
		ev, err := s.ReadEvents(context.Background(), 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		now := ev[0].Event.When().Add(90 * time.Minute)
		fw, err := forward.New(fast(forward.Options{Store: s, Now: func() time.Time { return now }, Destinations: []config.Forward{
			{Name: "siem", Kind: "webhook", URL: "http://127.0.0.1:1/in", Secret: "k"}}}))
		if err != nil {
			t.Fatal(err)
		}
		stop := start(fw)
		waitFor(t, "a failure", func() bool { st, _ := fw.Status(context.Background()); return st[0].LastError != "" })
		stop()
		st, _ := fw.Status(context.Background())
		if st[0].LagSeconds != 5400 {
			t.Fatalf("lag_seconds %v, want 5400", st[0].LagSeconds)
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(fw.Collectors()...)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, mf := range mfs {
			if mf.GetName() == "tapdmirror_forward_lag_seconds" {
				m := mf.GetMetric()[0]
				found = m.GetGauge().GetValue() == 5400 && m.GetLabel()[0].GetValue() == "siem"
			}
		}
		if !found {
			t.Fatalf("no tapdmirror_forward_lag_seconds{destination=\"siem\"} 5400 in %v", mfs)
		}
	})
}

// TestWebhookGzipSignsTheBytesSent: with gzip the body is compressed
// (Content-Encoding: gzip) and the signature is over the compressed bytes.
func TestWebhookGzipSignsTheBytesSent(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 3)
		size := headSize(t, s)
		inner := &receiver{t: t, secret: "k"}
		var compressed int
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, _ := io.ReadAll(r.Body)
			if r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get(forward.SignatureHeader) != forward.Sign([]byte("k"), raw) {
				t.Errorf("encoding %q, signature %q not over the bytes sent", r.Header.Get("Content-Encoding"), r.Header.Get(forward.SignatureHeader))
			}
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err != nil {
				t.Errorf("not gzip: %v", err)
				return
			}
			plain, _ := io.ReadAll(zr)
			compressed++
			// The inner receiver checks the rest, signing the plain body as it expects.
			r2 := r.Clone(r.Context())
			r2.Body = io.NopCloser(bytes.NewReader(plain))
			r2.Header.Set(forward.SignatureHeader, forward.Sign([]byte("k"), plain))
			inner.ServeHTTP(w, r2)
		}))
		defer srv.Close()
		fw, err := forward.New(fast(forward.Options{Store: s, Destinations: []config.Forward{
			{Name: "siem", Kind: "webhook", URL: srv.URL, Secret: "k", Gzip: true}}}))
		if err != nil {
			t.Fatal(err)
		}
		stop := start(fw)
		waitFor(t, "delivered", func() bool { st, _ := fw.Status(context.Background()); return st[0].Cursor == size })
		stop()
		if compressed == 0 {
			t.Fatal("no request")
		}
		checkDelivery(t, inner.events(), size)
	})
}

// TestDestinationsSharingReadsEachGetEverything: destinations with
// different batch sizes, some sharing reads, each receive every event in
// order, while events keep being appended.
func TestDestinationsSharingReadsEachGetEverything(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		fill(t, s, 10)
		var rcs []*receiver
		var dests []config.Forward
		for i, bs := range []int{4, 4, 7} {
			rc := &receiver{t: t, secret: "k"}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			rcs = append(rcs, rc)
			dests = append(dests, config.Forward{Name: fmt.Sprint("d", i), Kind: "webhook", URL: srv.URL, Secret: "k", BatchSize: bs})
		}
		fw, err := forward.New(fast(forward.Options{Store: s, Destinations: dests}))
		if err != nil {
			t.Fatal(err)
		}
		stop := start(fw)
		for round := range 3 {
			var batch []storage.Activity
			for i := range 9 {
				batch = append(batch, storage.Activity{Platform: "tapd", Serial: "proj-2", ActionType: "view", Username: "carol",
					Timestamp: time.Unix(1_700_100_000+int64(i), 0).UTC(), Source: storage.SourceTAPD, SourceID: fmt.Sprint("r", round, "-", i)})
			}
			if _, err := s.UpsertMirrored(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
		}
		size := headSize(t, s)
		waitFor(t, "every destination caught up", func() bool {
			st, _ := fw.Status(context.Background())
			return st[0].Cursor == size && st[1].Cursor == size && st[2].Cursor == size
		})
		stop()
		for _, rc := range rcs {
			if dups := checkDelivery(t, rc.events(), size); dups != 0 {
				t.Errorf("%d duplicates from a receiver that never failed", dups)
			}
		}
	})
}
