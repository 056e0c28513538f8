package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/report"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

const (
	readTok  = "console-read-token-0000000000000000000"
	adminTok = "console-admin-token-000000000000000000"
)

func scopedTokens() []config.Token {
	return []config.Token{
		{Name: "auditor", Token: readTok, Scope: config.ScopeRead},
		{Name: "ops", Token: adminTok, Scope: config.ScopeAdmin},
	}
}

var shanghai, _ = time.LoadLocation("Asia/Shanghai")

func testLogger() *slog.Logger {
	if os.Getenv("SYNC_TEST_LOGS") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// mirror is a running tapd-mirror wired as `serve` wires it (store,
// migrations, TAPD client, syncer with its schedule, API with the console)
// against the fake TAPD; only the syncer's clock is the fake's, so that
// moving the fake's horizon moves the engine's too.
type mirror struct {
	t      *testing.T
	fake   *tapdtest.Server
	store  *storage.Store
	syncer *syncer.Syncer
	key    *integrity.Key
	url    string
}

func startMirror(t *testing.T, dbURL string, tokens []config.Token) *mirror {
	t.Helper()
	fake := tapdtest.New(tapdtest.Options{Seed: 13, Clock: time.Now, Projects: 2, Months: 7,
		RecordsPerDay: 12, CompanyRecordsPerDay: 2})
	t.Cleanup(fake.Close)
	st := storagetest.Open(t, dbURL)
	st.SetCountsZone(shanghai) // as serve does: the daily counts in the configured zone
	user, pw := fake.Credentials()
	client, err := tapd.New(tapd.Options{BaseURL: fake.URL, APIUser: user, APIPassword: pw, RequestsPerMinute: -1,
		RetryWaitMin: time.Millisecond, RetryWaitMax: 4 * time.Millisecond, Location: shanghai, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var ws []config.Workspace
	for _, w := range []string{"projects:" + fake.CompanyID(), "company:" + fake.CompanyID()} {
		p, err := config.ParseWorkspace(w)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, p)
	}
	sy := syncer.New(syncer.Options{Store: st, TAPD: client, Workspaces: ws, Now: fake.Now, Interval: time.Hour,
		Overlap: 5 * time.Minute, Logger: testLogger()})
	if err := sy.Start(); err != nil { // the first scheduled turn runs at once, as in serve
		t.Fatal(err)
	}
	t.Cleanup(func() { sy.Stop(); sy.Wait() })
	skey, err := integrity.GenerateKey("tapd-mirror-console-test")
	if err != nil {
		t.Fatal(err)
	}
	key, err := integrity.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	// Reports as serve makes them (cmd/tapd-mirror reportMaker), without an access trail.
	makeReport := func(ctx context.Context, q report.Request) (report.Made, error) {
		return report.Make(ctx, report.Options{Store: st, Key: key, Location: shanghai, Horizon: sy.Horizon(), Now: time.Now(),
			From: q.From, To: q.To, Workspaces: q.Workspaces, By: q.By}, q.Lang, q.JSON, nil)
	}
	srv := newAPI(t, api.Options{Store: st, Syncer: sy, Tokens: tokens, Location: shanghai, Logger: testLogger(),
		Integrity: api.Integrity{VerifierKey: key.VerifierKey()}, Report: makeReport})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	m := &mirror{t: t, fake: fake, store: st, syncer: sy, key: key, url: hs.URL}
	m.waitSynced(3)
	// serve signs checkpoints after runs; here one is signed once the backfill is in.
	if _, _, err := st.SignCheckpoint(context.Background(), key, time.Now()); err != nil {
		t.Fatal(err)
	}
	return m
}

// waitSynced waits until n targets finished a run.
func (m *mirror) waitSynced(n int) {
	m.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, err := m.syncer.Status(context.Background())
		done := 0
		for _, s := range st {
			if s.LastSuccess != nil && !s.Running {
				done++
			}
		}
		if err == nil && done >= n {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("targets did not sync: %+v, %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apiGet calls the API with a bearer token and returns the body.
func (m *mirror) apiGet(path, token string) (int, []byte) {
	m.t.Helper()
	req, _ := http.NewRequest("GET", m.url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// apiIDs lists every record id matching the API query, newest first.
func (m *mirror) apiIDs(query string) []int64 {
	m.t.Helper()
	code, b := m.apiGet("/api/v1/activity_log?limit=1000&"+query, "")
	var env struct {
		Data []struct {
			ID int64 `json:"id"`
		} `json:"data"`
	}
	if code != 200 || json.Unmarshal(b, &env) != nil {
		m.t.Fatalf("API list %s = %d %s", query, code, b)
	}
	var ids []int64
	for _, d := range env.Data {
		ids = append(ids, d.ID)
	}
	return ids
}

// browser drives one headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// chromiumPath finds Debian's chromium (or another Chrome) on PATH.
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// newBrowser starts headless Chromium. Without it the test skips, except
// with CI=true, where it fails: CI must never go green without the browser.
func newBrowser(t *testing.T, acceptLanguage string) *browser {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is required when CI=true (apt-get install -y chromium) but is not on PATH")
		}
		t.Skip("browser test skipped: chromium not found on PATH (apt-get install -y chromium; with CI=true this fails)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1400, 1000), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	// The first call starts the browser, and its context must outlive it: no timeout here.
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("starting chromium %s: %v", path, err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders,
		network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Accept-Language": acceptLanguage}}); err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, ctx: ctx}
	t.Cleanup(b.screenshotOnFailure) // runs before the browser is closed (cleanups are LIFO)
	return b
}

// step bounds each browser step, so a stuck page fails the test instead of hanging it.
const step = 60 * time.Second

// screenshotOnFailure saves what the browser showed when the test failed,
// to a directory that outlives the test, and logs where.
func (b *browser) screenshotOnFailure() {
	if !b.t.Failed() {
		return
	}
	dir := os.Getenv("CONSOLE_FAILURE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "tapd-mirror-console-failures")
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	where, _ := chromedp.Run(ctx, chromedp.Location())
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("no failure screenshot: %v", err)
		return
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(b.t.Name()) + "-" + time.Now().Format("150405") + ".png"
	if err := os.MkdirAll(dir, 0o755); err == nil {
		if err = os.WriteFile(filepath.Join(dir, name), png, 0o644); err == nil {
			b.t.Logf("failure screenshot of %s: %s", where, filepath.Join(dir, name))
			return
		}
	}
	b.t.Logf("could not save the failure screenshot in %s", dir)
}

// do runs actions, failing the test on error.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// get runs one action and returns its value, failing the test on error.
func get[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %v", err)
	}
	return v
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	return get(b, chromedp.Evaluate[T](expr))
}

// open navigates to u and waits for the page.
func (b *browser) open(u string) {
	b.t.Helper()
	b.do(chromedp.Navigate(u), chromedp.WaitReady(chromedp.CSS("body")))
}

var markStale = chromedp.Evaluate[chromedp.Void](`window.__stale = true; undefined`)

// waitNewDocument waits until the marked document was replaced by a loaded
// one. It asks from Go, tolerating the errors of a page going away under
// the question (a poll inside the old page dies with it).
func (b *browser) waitNewDocument() {
	b.t.Helper()
	deadline := time.Now().Add(step)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		done, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__stale === undefined && document.readyState === "complete"`))
		cancel()
		if err == nil && done {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("browser: no new page after %s (last error: %v)", step, err)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// submit clicks sel (a link or a submit button) and waits for the next
// document: the old one is marked, and the wait ends when the mark is gone.
func (b *browser) submit(sel string) {
	b.t.Helper()
	b.do(markStale, chromedp.Click(chromedp.CSS(sel)))
	b.waitNewDocument()
}

// evalAndWait runs JavaScript that leads to a new document and waits for it.
func (b *browser) evalAndWait(js string) {
	b.t.Helper()
	b.do(markStale, chromedp.Evaluate[chromedp.Void](js+"; undefined"))
	b.waitNewDocument()
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(get(b, chromedp.Text(chromedp.CSS(sel))))
}

func (b *browser) location() string {
	b.t.Helper()
	return get(b, chromedp.Location())
}

// typeInto types s into the input sel, key by key.
func (b *browser) typeInto(sel, s string) {
	b.t.Helper()
	b.do(chromedp.SendKeys(chromedp.CSS(sel), s))
}

// setValue sets a form control's value (a select's option, or text keys cannot type).
func (b *browser) setValue(sel, v string) {
	b.t.Helper()
	b.do(chromedp.SetValue(chromedp.CSS(sel), v))
}

// signIn signs in with token from the sign-in page.
func (b *browser) signIn(base, token string) {
	b.t.Helper()
	b.open(base + "/signin")
	b.typeInto(`input[name=token]`, token)
	b.submit(`#signin-button`)
	if got := b.text(`#whoami`); !strings.Contains(got, "Signed in") && !strings.Contains(got, "已登录") {
		b.t.Fatalf("not signed in: %q at %s", got, b.location())
	}
}

// rowIDs are the record ids of the result table, top to bottom.
func (b *browser) rowIDs() []int64 {
	b.t.Helper()
	return eval[[]int64](b, `[...document.querySelectorAll("#results tbody tr")].map(r => Number(r.dataset.id))`)
}

// column is the text of one column of the result table.
func (b *browser) column(class string) []string {
	b.t.Helper()
	return eval[[]string](b, fmt.Sprintf(`[...document.querySelectorAll("#results tbody td.%s")].map(td => td.textContent.trim())`, class))
}

func query(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}
