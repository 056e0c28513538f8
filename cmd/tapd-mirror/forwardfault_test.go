package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// TestServeKilledMidDeliveryLosesNothing: serve (a child process) is
// killed with SIGKILL while the webhook holds a batch it kept but has not
// answered; a new serve resends from the cursor: every event arrives,
// first arrivals in log order, every duplicate an index already delivered.
// Then replay, by the command beside the running serve and by the API,
// sends the events again from the index asked.
func TestServeKilledMidDeliveryLosesNothing(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 3, Projects: 1, RecordsPerDay: 4})
		defer f.Close()
		var mu sync.Mutex
		var got []int64
		requests := 0
		held := make(chan struct{})
		release := make(chan struct{})
		rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			requests++
			n := requests
			for sc := bufio.NewScanner(bytes.NewReader(body)); sc.Scan(); {
				var e forward.Event
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					t.Errorf("line %q: %v", sc.Text(), err)
				}
				got = append(got, e.Index)
			}
			mu.Unlock()
			if n == 3 { // kept, never answered: the mirror dies waiting
				close(held)
				<-release
			}
		}))
		defer rc.Close()
		defer close(release)
		cfgPath := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("forward:\n  - {name: siem, kind: webhook, url: '%s/in', secret: s3cret, batch_size: 5}\n", rc.URL)), 0o600); err != nil {
			t.Fatal(err)
		}
		env := fakeEnv(f, dbURL, "10074561")
		cmd, out := program(t, env, "serve", "--config", cfgPath)
		select {
		case <-held:
		case <-time.After(2 * time.Minute):
			t.Fatalf("no third delivery\n%s", out)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()

		p := start(t, env, "serve", "--config", cfgPath)
		st := storagetest.Open(t, dbURL)
		ctx := context.Background()
		caughtUp := func() int64 {
			var size int64
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
				head, _ := st.Head(ctx)
				cur, _ := st.ForwardCursor(ctx, "siem")
				if head.Size > 0 && cur.Next == head.Size {
					size = head.Size
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not caught up: cursor %d of %d\n%s", cur.Next, head.Size, p.stderr)
				}
			}
			return size
		}
		size := caughtUp()
		mu.Lock()
		first := append([]int64(nil), got...)
		mu.Unlock()
		next, dups := int64(0), 0
		for _, idx := range first {
			switch {
			case idx == next:
				next++
			case idx < next:
				dups++
			default:
				t.Fatalf("index %d arrived before %d: lost or out of order", idx, next)
			}
		}
		if next != size || dups == 0 {
			t.Fatalf("delivered up to %d of %d with %d duplicates (the held batch must come again)", next, size, dups)
		}

		// Replay by the command, beside the running serve.
		stdout, stderr, err := run(t, env, "forward", "replay", "siem", "--from", "2", "--config", cfgPath)
		if err != nil || !strings.Contains(stdout, fmt.Sprintf("cursor moved from %d back to 2", size)) {
			t.Fatalf("forward replay: %v\n%s%s", err, stdout, stderr)
		}
		if _, _, err := run(t, env, "forward", "replay", "nope", "--from", "0", "--config", cfgPath); err == nil || !strings.Contains(err.Error(), `"nope" (siem are configured`) {
			t.Fatalf("replay of an unknown destination: %v", err)
		}
		waitReplayed := func(from int64, before int) {
			t.Helper()
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
				mu.Lock()
				again := append([]int64(nil), got[before:]...)
				mu.Unlock()
				if int64(len(again)) >= size-from {
					for i, idx := range again[:size-from] {
						if idx != from+int64(i) {
							t.Fatalf("replayed event %d has index %d", i, idx)
						}
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("replay from %d: %d events came again\n%s", from, len(again), p.stderr)
				}
			}
		}
		waitReplayed(2, len(first))
		caughtUp()

		// And by the API.
		mu.Lock()
		before := len(got)
		mu.Unlock()
		req, _ := http.NewRequest("POST", p.base+"/api/v1/forward/siem/replay?from=0", nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST replay: %d", resp.StatusCode)
		}
		waitReplayed(0, before)
		if strings.Contains(p.stderr.String(), "s3cret") {
			t.Errorf("the webhook secret is in the logs")
		}
		// Every replay is in the access trail: the command's by its OS user
		// (the refused one too), the API's by its token.
		replayStore := storagetest.Open(t, dbURL)
		replays, err := replayStore.ListAccess(context.Background(), storage.AccessFilter{Action: "forward.replay"}, 10, 0)
		if err != nil || len(replays) != 3 || !strings.HasPrefix(replays[0].Principal, "cli:") || replays[0].Params["from"] != "2" ||
			replays[0].Outcome != storage.AccessOK || replays[1].Outcome != storage.AccessError ||
			replays[2].Principal != "admin_token" || replays[2].SourceIP != "127.0.0.1" || replays[2].Outcome != storage.AccessOK {
			t.Fatalf("forward.replay entries: %+v (%v)", replays, err)
		}
	})
}
