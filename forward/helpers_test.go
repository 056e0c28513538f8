package forward_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// fill stores n mirrored records (with TAPD's fields), one local record,
// deletes the local one and places a hold: every kind a destination gets.
func fill(t *testing.T, s *storage.Store, n int) {
	t.Helper()
	ctx := context.Background()
	var batch []storage.Activity
	for i := range n {
		batch = append(batch, storage.Activity{Platform: "tapd", Serial: "proj-1", ActionType: "download",
			ActionDetail: "附件: spec.pdf", Username: "alice", Timestamp: time.Unix(1_700_000_000+int64(i), 0).UTC(),
			Source: storage.SourceTAPD, SourceID: fmt.Sprint(1000 + i), WorkspaceID: "20001",
			Extra: map[string]string{"ip": "10.0.0.7", "ua": "Mozilla/5.0", "url": "https://www.tapd.cn/x",
				"operate_object": "附件", "operate_object_key": "attachment", "title": fmt.Sprintf("spec-%d.pdf", i)}})
	}
	if _, err := s.UpsertMirrored(ctx, batch); err != nil {
		t.Fatal(err)
	}
	id, err := s.InsertActivity(ctx, storage.Activity{Platform: "web", Serial: "local", ActionType: "login",
		ActionDetail: "ok", Username: "bob", Timestamp: time.Unix(1_700_000_000, 0).UTC(), Source: storage.SourceLocal})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteActivity(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateHold(ctx, "case-1", "litigation", storage.HoldFilter{Username: "alice"}, "admin"); err != nil {
		t.Fatal(err)
	}
}

func headSize(t *testing.T, s *storage.Store) int64 {
	t.Helper()
	h, err := s.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h.Size
}

func parseLines(t *testing.T, body []byte) []forward.Event {
	t.Helper()
	var out []forward.Event
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var e forward.Event
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	if len(body) > 0 && body[len(body)-1] != '\n' {
		t.Fatalf("body does not end with a newline: %q", body)
	}
	return out
}

// waitFor waits for cond, failing after a minute (a hang, not a timing).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// start runs fw until the returned stop is called (and waits for it).
func start(fw *forward.Forwarder) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fw.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func fast(o forward.Options) forward.Options {
	o.Logger = slog.New(slog.DiscardHandler)
	o.Poll, o.BackoffMin, o.BackoffMax = time.Millisecond, time.Millisecond, 10*time.Millisecond
	return o
}
