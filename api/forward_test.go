package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// TestForwardReplayMovesTheCursorBack: an admin moves a destination's
// cursor back and leaves the request the forwarder takes; anyone else, an
// unknown destination or an index it cannot replay from is refused with a
// message saying why.
func TestForwardReplayMovesTheCursorBack(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		seedBoth(t, s)
		if err := s.SaveForwardCursor(ctx, storage.ForwardCursor{Name: "siem", Next: 2}); err != nil {
			t.Fatal(err)
		}
		c := serve(t, api.Options{Store: s, Tokens: scopedTokens(),
			ForwardReplay: func(ctx context.Context, name string, from int64, since time.Time) (forward.Replay, error) {
				return forward.ReplayFrom(ctx, s, []string{"siem", "lake"}, name, from, since)
			}})
		path := "/api/v1/forward/siem/replay?from=1"
		refused(t, s, c, 401, "", "POST", path, "")
		refused(t, s, c, 403, "", "POST", path, "", bearer(readTok)...)
		refused(t, s, c, 403, "", "POST", path, "", bearer(writeTok)...)
		refused(t, s, c, 404, `"nope" (siem, lake are configured`, "POST", "/api/v1/forward/nope/replay?from=0", "", bearer(adminTok)...)
		refused(t, s, c, 400, "not a log index", "POST", "/api/v1/forward/siem/replay?from=-1", "", bearer(adminTok)...)
		refused(t, s, c, 400, "not a log index", "POST", "/api/v1/forward/siem/replay?from=x", "", bearer(adminTok)...)
		refused(t, s, c, 400, "exactly one of from", "POST", "/api/v1/forward/siem/replay", "", bearer(adminTok)...)
		refused(t, s, c, 400, "exactly one of from", "POST", "/api/v1/forward/siem/replay?from=0&since=0", "", bearer(adminTok)...)
		refused(t, s, c, 400, "neither RFC3339", "POST", "/api/v1/forward/siem/replay?since=yesterday", "", bearer(adminTok)...)
		refused(t, s, c, 400, "past destination siem's cursor 2", "POST", "/api/v1/forward/siem/replay?from=3", "", bearer(adminTok)...)
		refused(t, s, c, 405, "", "GET", path, "", bearer(adminTok)...)
		if _, ok, _ := s.TakeForwardReplay(ctx, "siem"); ok {
			t.Fatal("a refused replay left a request")
		}

		r := c.send("POST", path, "", bearer(adminTok)...)
		if got := decode[forward.Replay](t, r); r.status != 200 || got != (forward.Replay{Name: "siem", From: 1, Previous: 2}) {
			t.Fatalf("replay: %d %s", r.status, r.body)
		}
		if cur, err := s.ForwardCursor(ctx, "siem"); err != nil || cur.Next != 1 {
			t.Fatalf("cursor %+v %v, want 1", cur, err)
		}
		// A forwarder saving its in-flight batch meanwhile cannot undo it.
		if err := s.SaveForwardCursor(ctx, storage.ForwardCursor{Name: "siem", Next: 2}); err != nil {
			t.Fatal(err)
		}
		if from, ok, err := s.TakeForwardReplay(ctx, "siem"); err != nil || !ok || from != 1 {
			t.Fatalf("replay request %d %v %v", from, ok, err)
		}
		if _, ok, _ := s.TakeForwardReplay(ctx, "siem"); ok {
			t.Fatal("the request was taken twice")
		}
		// since: the first event at or after it; one in the future replays nothing.
		r = c.send("POST", "/api/v1/forward/lake/replay?since=0", "", bearer(adminTok)...)
		if got := decode[forward.Replay](t, r); r.status != 200 || got.From != 0 || got.Previous != 0 {
			t.Fatalf("replay since 0: %d %s", r.status, r.body)
		}
		r = c.send("POST", "/api/v1/forward/siem/replay?since=2100-01-01T00:00:00Z", "", bearer(adminTok)...)
		if got := decode[forward.Replay](t, r); r.status != 200 || got.From != 2 || got.Previous != 2 {
			t.Fatalf("replay since 2100: %d %s", r.status, r.body)
		}
	})
}
