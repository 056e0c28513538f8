package tapd_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/tapd"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// refused counts the requests TAPD answered with 429.
func refused(f *tapdtest.Server) int {
	n := 0
	for _, r := range f.Requests() {
		if r.Status == 429 {
			n++
		}
	}
	return n
}

// TestQuotaPenaltyPausesTheWholeClient: after one 429 TAPD refuses
// everything for 5 minutes; the client pauses 1, then 2, then 4 minutes,
// sending one probe after each pause, and every call succeeds.
func TestQuotaPenaltyPausesTheWholeClient(t *testing.T) {
	f := newFake(t)
	c := fastClient(t, f)
	ws := f.Projects()[0].ID
	f.SetPenalty(5 * time.Minute)
	f.RateLimitStorm(1, false)
	start := f.Now()
	if _, err := c.MemberActivityLog(context.Background(), lastWeek(ws)); err != nil {
		t.Fatalf("a 429 failed the call: %v", err)
	}
	var statuses []int
	for _, r := range f.Requests() {
		statuses = append(statuses, r.Status)
	}
	if want := []int{429, 429, 429, 200}; !slices.Equal(statuses, want) {
		t.Fatalf("statuses %v, want %v: the refusal, a probe after 1m and after 3m, then success after 7m", statuses, want)
	}
	if waited := f.Now().Sub(start); waited != 7*time.Minute {
		t.Fatalf("paused %v in all, want 7m (1m + 2m + 4m)", waited)
	}
	if !c.PausedUntil().IsZero() {
		t.Fatalf("PausedUntil %v after success, want zero", c.PausedUntil())
	}

	// Success resets the cool-down: the next 429 pauses a minute again.
	f.SetPenalty(0)
	f.RateLimitStorm(1, false)
	start = f.Now()
	if _, err := c.MemberActivityLog(context.Background(), lastWeek(ws)); err != nil {
		t.Fatal(err)
	}
	if waited := f.Now().Sub(start); waited != time.Minute {
		t.Fatalf("paused %v after a success and one 429, want 1m", waited)
	}
}

// TestPenaltyHoldsConcurrentCalls: calls running at once share the pause;
// while refused only the first refusals in flight and one probe per pause
// reach TAPD.
func TestPenaltyHoldsConcurrentCalls(t *testing.T) {
	f := newFake(t)
	c := fastClient(t, f)
	ws := f.Projects()[0].ID
	f.SetPenalty(5 * time.Minute)
	f.RateLimitStorm(1, false)
	start := f.Now()
	const callers = 8
	var wg sync.WaitGroup
	errs := make(chan error, callers*5)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if _, err := c.MemberActivityLog(context.Background(), lastWeek(ws)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a call failed: %v", err)
	}
	// At most every caller's request in flight at the first 429, then the
	// probes after 1m and 3m.
	if n := refused(f); n < 3 || n > callers+2 {
		t.Fatalf("%d refused requests, want 3..%d", n, callers+2)
	}
	// Refusals of requests already in flight do not lengthen the pause.
	if waited := f.Now().Sub(start); waited != 7*time.Minute {
		t.Fatalf("paused %v in all, want 7m (1m + 2m + 4m)", waited)
	}
}

func TestPausedCallStopsWithItsContext(t *testing.T) {
	f := newFake(t)
	block := make(chan struct{})
	c := fastClient(t, f, func(o *tapd.Options) {
		o.WaitUntil = func(ctx context.Context, _ time.Time) error {
			close(block)
			<-ctx.Done()
			return ctx.Err()
		}
	})
	f.RateLimitStorm(1, false)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-block; cancel() }()
	_, err := c.MemberActivityLog(ctx, lastWeek(f.Projects()[0].ID))
	if err == nil || ctx.Err() == nil || !strings.Contains(err.Error(), "quota penalty paused requests until") {
		t.Fatalf("err = %v, want the call stopped while paused, saying so", err)
	}
	if c.PausedUntil().IsZero() {
		t.Fatal("PausedUntil is zero while paused")
	}
}

// TestRateLimitHeadersPace: with X-RateLimit-Remaining, the client waits
// for the next quota window before spending its last requests, learns a
// window longer than a minute, and never earns a 429.
func TestRateLimitHeadersPace(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window time.Duration
		reset  bool
	}{{"one-minute window", time.Minute, false}, {"three-minute window", 3 * time.Minute, false}, {"reset header", 2 * time.Minute, true}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			c := fastClient(t, f)
			f.SetQuotaHeaders(10, tc.window, tc.reset)
			start := f.Now()
			for range 40 {
				if _, err := c.MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: f.Projects()[0].ID, Limit: 1}); err != nil {
					t.Fatal(err)
				}
			}
			if n := refused(f); n != 0 {
				t.Fatalf("%d requests refused with 429, want 0", n)
			}
			if waited := f.Now().Sub(start); waited < 4*tc.window {
				t.Fatalf("40 requests at 10 per %v took %v of TAPD's time, want at least %v", tc.window, waited, 4*tc.window)
			}
		})
	}
	t.Run("the limit lowers the limiter", func(t *testing.T) {
		f := newFake(t)
		c := fastClient(t, f, func(o *tapd.Options) { o.RequestsPerMinute = 600 })
		f.SetQuotaHeaders(10, time.Minute, false)
		if _, err := c.MemberActivityLog(context.Background(), tapd.Query{WorkspaceID: f.Projects()[0].ID, Limit: 1}); err != nil {
			t.Fatal(err)
		}
		if got := c.RateLimit(); got != 10 {
			t.Fatalf("RateLimit %v, want 10 a minute learned from X-RateLimit-Limit", got)
		}
	})
}
