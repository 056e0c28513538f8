package syncer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

var fakeNow = time.Date(2026, 11, 25, 12, 0, 30, 0, tapdtest.Shanghai)

type harness struct {
	t      *testing.T
	fake   *tapdtest.Server
	store  *storage.Store
	dbURL  string
	client *countingTAPD
	opts   syncer.Options
}

// countingTAPD wraps the client to count calls and to catch two runs of one
// workspace paging at the same time.
type countingTAPD struct {
	syncer.TAPD
	mu       sync.Mutex
	calls    int
	inFlight map[string]int
	overlaps int
	onCall   func(n int) // called before each member_activity_log call
}

func (c *countingTAPD) MemberActivityLog(ctx context.Context, q tapd.Query) (tapd.Page, error) {
	key := fmt.Sprint(q.WorkspaceID, q.CompanyOnly)
	c.mu.Lock()
	c.calls++
	n := c.calls
	c.inFlight[key]++
	if c.inFlight[key] > 1 {
		c.overlaps++
	}
	hook := c.onCall
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.inFlight[key]--
		c.mu.Unlock()
	}()
	if hook != nil {
		hook(n)
	}
	return c.TAPD.MemberActivityLog(ctx, q)
}

func (c *countingTAPD) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

func testLogger() *slog.Logger {
	if os.Getenv("SYNC_TEST_LOGS") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newHarness(t *testing.T, dbURL string, fo tapdtest.Options, workspaces ...string) *harness {
	t.Helper()
	if fo.Now.IsZero() {
		fo.Now = fakeNow
	}
	if fo.Seed == 0 {
		fo.Seed = 42
	}
	if fo.RecordsPerDay == 0 {
		fo.RecordsPerDay = 6
	}
	fake := tapdtest.New(fo)
	t.Cleanup(fake.Close)
	client := newClient(t, fake)
	var ws []config.Workspace
	for _, w := range workspaces {
		p, err := config.ParseWorkspace(w)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, p)
	}
	h := &harness{t: t, fake: fake, dbURL: dbURL, store: storagetest.Open(t, dbURL),
		client: &countingTAPD{TAPD: client, inFlight: map[string]int{}}}
	h.opts = syncer.Options{Store: h.store, TAPD: h.client, Workspaces: ws,
		Now: fake.Now, Logger: testLogger(), Overlap: 5 * time.Minute}
	return h
}

// newClient is the harness's TAPD client for fake, with millisecond
// backoffs, changed by mod. Quota pauses pass at once on the client's own
// clock; TAPD's clock (and horizon) stays where the test puts it.
func newClient(t *testing.T, fake *tapdtest.Server, mod ...func(*tapd.Options)) *tapd.Client {
	t.Helper()
	user, pw := fake.Credentials()
	clock := tapdtest.NewVirtualClock(fake.Now())
	o := tapd.Options{BaseURL: fake.URL, APIUser: user, APIPassword: pw, RequestsPerMinute: -1,
		RetryWaitMin: time.Millisecond, RetryWaitMax: 4 * time.Millisecond,
		MaxRetries: 10, Timeout: 10 * time.Second, Logger: testLogger(), Now: clock.Now, WaitUntil: clock.WaitUntil}
	for _, m := range mod {
		m(&o)
	}
	client, err := tapd.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func (h *harness) syncer(mod ...func(*syncer.Options)) *syncer.Syncer {
	o := h.opts
	for _, m := range mod {
		m(&o)
	}
	return syncer.New(o)
}

// runAll runs every workspace once and fails the test on error.
func (h *harness) runAll(ro syncer.RunOptions) []storage.SyncRun {
	h.t.Helper()
	if ro.Trigger == "" {
		ro.Trigger = syncer.TriggerCLI
	}
	runs, err := h.syncer().RunAll(context.Background(), ro, "")
	if err != nil {
		h.t.Fatalf("RunAll: %v", err)
	}
	return runs
}

// scope selects the fake's records that a workspace key mirrors.
func (h *harness) scope(key string) func(tapdtest.Record) bool {
	if len(key) > 8 && key[:8] == "company:" {
		id := key[8:]
		return func(r tapdtest.Record) bool { return r.CompanyLevel && r.Workspace == id }
	}
	return func(r tapdtest.Record) bool { return !r.CompanyLevel && r.Workspace == key }
}

// expected is the fake's truth for the given workspace keys within [from, to).
func (h *harness) expected(from, to time.Time, keys ...string) []tapdtest.Record {
	var out []tapdtest.Record
	for _, r := range h.fake.Truth() {
		if r.Created.Before(from) || !r.Created.Before(to) {
			continue
		}
		for _, k := range keys {
			if h.scope(k)(r) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// assertMirror checks the store holds exactly want among mirrored rows:
// 0 missing, 0 duplicated, 0 unexpected, each field normalized as designed.
func (h *harness) assertMirror(want []tapdtest.Record) {
	h.t.Helper()
	ctx := context.Background()
	got, err := h.store.ListActivities(ctx, storage.Filter{Source: storage.SourceTAPD}, 10_000_000, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	byID := map[string]storage.Activity{}
	dups := 0
	for _, a := range got {
		if _, seen := byID[a.SourceID]; seen {
			dups++
		}
		byID[a.SourceID] = a
	}
	missing, wrong := 0, 0
	wantIDs := map[string]bool{}
	for _, r := range want {
		wantIDs[r.ID] = true
		a, ok := byID[r.ID]
		if !ok {
			missing++
			if missing <= 3 {
				h.t.Errorf("missing record %s created %s in %s", r.ID, r.Created, r.Workspace)
			}
			continue
		}
		exp := storage.Activity{Platform: "tapd", Serial: r.Workspace, ActionType: r.TypeKey,
			ActionDetail: tapdtest.OperateObjects[r.ObjectKey] + ": " + r.Title, Username: r.Creator}
		x := a.ExtraFields()
		if a.Platform != exp.Platform || a.Serial != exp.Serial || a.ActionType != exp.ActionType ||
			a.ActionDetail != exp.ActionDetail || a.Username != exp.Username || !a.Timestamp.Equal(r.Created) ||
			x["ip"] != r.IP || x["url"] != r.URL || x["ua"] != r.UA || x["title"] != r.Title ||
			x["operate_object_key"] != r.ObjectKey || x["action"] != r.Action {
			wrong++
			if wrong <= 3 {
				h.t.Errorf("record %s normalized wrong:\n got %+v\nwant %+v (ts %s)", r.ID, a, exp, r.Created)
			}
		}
	}
	unexpected := 0
	for id := range byID {
		if !wantIDs[id] {
			unexpected++
		}
	}
	if missing+dups+wrong+unexpected > 0 || len(want) == 0 {
		h.t.Fatalf("mirror vs truth: want %d, stored %d: %d missing, %d duplicated, %d wrong, %d unexpected",
			len(want), len(got), missing, dups, wrong, unexpected)
	}
}

// spanOf is the union window [earliest start, latest end) of runs.
func spanOf(runs ...storage.SyncRun) (time.Time, time.Time) {
	sort.Slice(runs, func(i, j int) bool { return runs[i].WindowStart.Before(runs[j].WindowStart) })
	from, to := runs[0].WindowStart, runs[0].WindowEnd
	for _, r := range runs {
		if r.WindowEnd.After(to) {
			to = r.WindowEnd
		}
	}
	return from, to
}

func keysOf(runs []storage.SyncRun) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.Workspace)
	}
	sort.Strings(out)
	return out
}

// assertEveryRequestOK fails the test unless TAPD answered every request 200:
// nothing went past a limit TAPD enforces (paging cap, horizon, month rule).
func (h *harness) assertEveryRequestOK() {
	h.t.Helper()
	for _, r := range h.fake.Requests() {
		if r.Status != 200 {
			h.t.Fatalf("TAPD answered %d to %v", r.Status, r.Query)
		}
	}
}
