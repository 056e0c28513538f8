package console_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// with is the browser for a subtest: failures are reported on t, and a
// failing subtest leaves a screenshot.
func (b *browser) with(t *testing.T) *browser {
	nb := &browser{t: t, ctx: b.ctx}
	t.Cleanup(nb.screenshotOnFailure)
	return nb
}

// The compliance console end to end in headless Chromium, against the
// server wired as serve wires it, the fake TAPD and SQLite.
func TestConsoleInBrowser(t *testing.T) {
	m := startMirror(t, storagetest.URL(t, "sqlite"), scopedTokens())
	b0 := newBrowser(t, "en-US,en;q=0.9")
	user, action := "张伟", "add"
	searchQuery := query("user", user, "action", action)
	apiQuery := query("username", user, "action_type", action)
	want := m.apiIDs(apiQuery)
	if len(want) < 2*50+1 {
		t.Fatalf("test data too thin: %d records of %s/%s, want more than two pages", len(want), user, action)
	}

	t.Run("signed out, a search sends to sign-in and back", func(t *testing.T) {
		b := b0.with(t)
		b.open(m.url + "/?" + searchQuery)
		if loc := b.location(); !strings.Contains(loc, "/signin?next=") {
			t.Fatalf("signed-out search went to %s, want the sign-in page", loc)
		}
		b.typeInto(`input[name=token]`, readTok)
		b.submit(`#signin-button`)
		if loc := b.location(); !strings.HasSuffix(loc, "/?"+searchQuery) {
			t.Fatalf("after sign-in at %s, want back at the search", loc)
		}
		if who := b.text(`#whoami`); !strings.Contains(who, "auditor") || !strings.Contains(who, "read") {
			t.Fatalf("whoami = %q", who)
		}
	})

	t.Run("search by user and action through the form, page forward and back", func(t *testing.T) {
		b := b0.with(t)
		b.open(m.url + "/")
		b.setValue(`input[name=user]`, user)
		b.setValue(`select[name=action]`, action)
		b.submit(`#search-button`)
		if loc := b.location(); !strings.Contains(loc, "user="+strings.ReplaceAll(query("u", user)[2:], "+", "%20")) || !strings.Contains(loc, "action=add") {
			t.Fatalf("the URL does not hold the query: %s", loc)
		}
		if got := b.text(`#count`); got != fmt.Sprintf("%s records match", thousands(len(want))) {
			t.Fatalf("count = %q, want %d as the API counts", got, len(want))
		}
		page1 := b.rowIDs()
		if !slices.Equal(page1, want[:50]) {
			t.Fatalf("first page = %v, want the API's first 50 %v", page1, want[:50])
		}
		for _, u := range b.column("user") {
			if u != user {
				t.Fatalf("a row of user %q in a search for %q", u, user)
			}
		}
		for _, a := range b.column("action") {
			if a != "Create" {
				t.Fatalf("action column shows %q, want TAPD's English label Create", a)
			}
		}
		b.submit(`#page-older`)
		if got := b.rowIDs(); !slices.Equal(got, want[50:100]) {
			t.Fatalf("second page = %v, want %v", got, want[50:100])
		}
		b.submit(`#page-older`)
		third := want[100:min(150, len(want))]
		if got := b.rowIDs(); !slices.Equal(got, third) {
			t.Fatalf("third page = %v, want %v", got, third)
		}
		b.submit(`#page-newer`)
		if got := b.rowIDs(); !slices.Equal(got, want[50:100]) {
			t.Fatalf("back to the second page = %v, want %v", got, want[50:100])
		}
		b.submit(`#page-newer`)
		if got := b.rowIDs(); !slices.Equal(got, page1) {
			t.Fatalf("back to the first page = %v, want %v", got, page1)
		}
		if eval[int](b, `document.querySelectorAll("#page-newer").length`) != 0 {
			t.Fatal("the first page offers newer records")
		}
	})

	t.Run("open a record's detail and come back", func(t *testing.T) {
		b := b0.with(t)
		b.open(m.url + "/?" + searchQuery)
		first := b.rowIDs()[0]
		b.submit(`#results tbody tr:first-child td.title a`)
		if loc := b.location(); !strings.Contains(loc, "/record/"+strconv.FormatInt(first, 10)) {
			t.Fatalf("detail at %s, want record %d", loc, first)
		}
		_, body := m.apiGet("/api/v1/activity_log?detail=1&limit=1&"+apiQuery, readTok)
		sourceID := between(string(body), `"source_id":"`, `"`)
		ip := between(string(body), `"ip":"`, `"`)
		prov := b.text(`#provenance`)
		for _, want := range []string{"tapd", sourceID, "Ingested at"} {
			if !strings.Contains(prov, want) {
				t.Errorf("provenance lacks %q: %s", want, prov)
			}
		}
		if extra := b.text(`#extra`); !strings.Contains(extra, ip) || !strings.Contains(extra, "operate_object_key") {
			t.Errorf("raw TAPD fields lack the ip %s: %s", ip, extra)
		}
		if fields := b.text(`#fields`); !strings.Contains(fields, user) || !strings.Contains(fields, "Create") {
			t.Errorf("fields = %s", fields)
		}
		// The record's inclusion proof in the signed checkpoint, recomputed to its root.
		if state := eval[string](b, `document.querySelector("#proof").dataset.state`); state != "proved" {
			t.Errorf("proof state = %q, want proved", state)
		}
		if checks := eval[[]string](b, `[...document.querySelectorAll("#events tr.event")].map(e => e.dataset.checks)`); len(checks) == 0 || slices.Contains(checks, "false") {
			t.Errorf("events' proofs check: %v", checks)
		}
		if note := eval[string](b, `document.querySelector("pre.note").textContent`); !strings.Contains(note, "tapd-mirror-console-test") {
			t.Errorf("signed checkpoint not shown: %q", note)
		}
		b.submit(`#back`)
		if got := b.rowIDs(); !slices.Equal(got, want[:50]) {
			t.Fatalf("back from the detail: %v", got)
		}
	})

	t.Run("switch language", func(t *testing.T) {
		b := b0.with(t)
		b.open(m.url + "/?" + searchQuery)
		b.submit(`#lang-zh`)
		if nav := b.text(`header nav`); !strings.Contains(nav, "搜索") || !strings.Contains(nav, "覆盖情况") {
			t.Fatalf("navigation after switching to Chinese: %q", nav)
		}
		for _, a := range b.column("action") {
			if a != "新增" {
				t.Fatalf("action column shows %q, want TAPD's label 新增", a)
			}
		}
		if got := b.text(`#count`); got != fmt.Sprintf("共 %s 条记录", thousands(len(want))) {
			t.Fatalf("count in Chinese = %q", got)
		}
		b.open(m.url + "/timeline") // the choice sticks (cookie) although the browser asks for English
		if h := b.text(`h1`); !strings.Contains(h, "活动时间分布") {
			t.Fatalf("the language did not stick: %q", h)
		}
		b.submit(`#lang-en`)
		if h := b.text(`h1`); !strings.Contains(h, "Activity over time") {
			t.Fatalf("back to English: %q", h)
		}
	})

	t.Run("export the search as CSV, as the API exports it", func(t *testing.T) {
		b := b0.with(t)
		b.open(m.url + "/?" + searchQuery)
		got := b.download(`#export-csv`)
		code, api := m.apiGet("/api/v1/activity_log/export?format=csv&"+apiQuery, readTok)
		if code != 200 || !bytes.Equal(got, api) {
			t.Fatalf("console CSV (%d bytes) differs from the API's (%d, %d bytes):\n%.300s\n---\n%.300s", len(got), code, len(api), got, api)
		}
		if lines := bytes.Count(got, []byte("\n")); lines < len(want)+1 {
			t.Fatalf("CSV has %d lines for %d records", lines, len(want))
		}
	})

	t.Run("a timeline bar narrows the search to its day", func(t *testing.T) {
		b := b0.with(t)
		today := time.Now().In(shanghai)
		b.open(m.url + "/timeline?" + searchQuery + "&" + query("from", today.AddDate(0, 0, -20).Format("2006-01-02"), "to", today.Format("2006-01-02")))
		type bar struct {
			Label string `json:"label"`
			Href  string `json:"href"`
		}
		bars := eval[[]bar](b, `[...document.querySelectorAll("#chart a.bar")].map(a => ({label: a.querySelector("title").textContent, href: a.getAttribute("href")}))`)
		if len(bars) != 21 {
			t.Fatalf("%d bars for 21 days by day", len(bars))
		}
		// The fullest bar: click it and the search shows exactly its records.
		best, n := 0, int64(-1)
		for i, bar := range bars {
			c, _ := strconv.ParseInt(strings.ReplaceAll(bar.Label[strings.LastIndex(bar.Label, " ")+1:], ",", ""), 10, 64)
			if c > n {
				best, n = i, c
			}
		}
		day := bars[best].Label[:10]
		b.submit(fmt.Sprintf(`#chart a.bar:nth-of-type(%d)`, best+1))
		loc := b.location()
		if !strings.Contains(loc, "from="+day) || !strings.Contains(loc, "to="+day) || !strings.Contains(loc, "action=add") {
			t.Fatalf("bar %s led to %s", day, loc)
		}
		from, _ := time.ParseInLocation("2006-01-02", day, shanghai)
		apiDay := m.apiIDs(apiQuery + fmt.Sprintf("&since=%d&until=%d", from.Unix(), from.AddDate(0, 0, 1).Unix()))
		if got := b.text(`#count`); got != fmt.Sprintf("%d records match", n) || len(apiDay) != int(n) {
			t.Fatalf("bar said %d, search says %q, API %d", n, got, len(apiDay))
		}
	})

	t.Run("resync is refused without the admin scope", func(t *testing.T) {
		b := b0.with(t)
		b.open(m.url + "/coverage")
		if help := b.text(`#admin-help`); !strings.Contains(help, "admin") {
			t.Fatalf("no explanation for a reader: %q", help)
		}
		if eval[int](b, `document.querySelectorAll("form[action='/coverage/resync']").length`) != 0 {
			t.Fatal("a reader is offered the resync form")
		}
		runs := m.runCount()
		// The form a reader is not shown, posted anyway with a valid CSRF token.
		b.evalAndWait(postForm("/coverage/resync", true, "workspace", "", "mode", "full"))
		if msg := b.text(`#error-message`); !strings.Contains(msg, "scope admin") {
			t.Fatalf("reader's resync answered %q", msg)
		}
		if m.runCount() != runs {
			t.Fatal("a reader's resync started a run")
		}
	})

	t.Run("sign out, sign in as admin", func(t *testing.T) {
		b := b0.with(t)
		b.open(m.url + "/")
		b.submit(`#signout button`)
		b.open(m.url + "/")
		if loc := b.location(); !strings.Contains(loc, "/signin") {
			t.Fatalf("still browsing after sign-out: %s", loc)
		}
		b.signIn(m.url, adminTok)
	})

	t.Run("a form post without the CSRF token is refused", func(t *testing.T) {
		b := b0.with(t)
		b.open(m.url + "/coverage")
		runs := m.runCount()
		b.evalAndWait(`(() => { const f = document.querySelector("#resync-all"); f.querySelector("input[name=csrf]").remove(); f.submit(); })()`)
		if msg := b.text(`#error-message`); !strings.Contains(msg, "CSRF") {
			t.Fatalf("resync without a CSRF token answered %q", msg)
		}
		b.open(m.url + "/coverage")
		b.evalAndWait(postForm("/coverage/resync", false, "csrf", "forged", "workspace", ""))
		if msg := b.text(`#error-message`); !strings.Contains(msg, "CSRF") {
			t.Fatalf("resync with a forged CSRF token answered %q", msg)
		}
		if m.runCount() != runs {
			t.Fatal("a refused form started a run")
		}
	})

	t.Run("a gap after TAPD's horizon jumps; resync shows the new run; acknowledge it", func(t *testing.T) {
		b := b0.with(t)
		b.open(m.url + "/coverage")
		if gapsBefore := eval[int](b, `document.querySelectorAll("svg.axis rect.gap").length`); gapsBefore != 0 {
			t.Fatalf("%d gaps before anything happened", gapsBefore)
		}
		before := m.runCount()
		// The mirror is off for 200 days: TAPD's half year moves past its checkpoint.
		m.fake.Advance(200 * 24 * time.Hour)
		b.submit(`#resync-all button`)
		if flash := b.text(`#flash`); !strings.Contains(flash, "Queued:") {
			t.Fatalf("after resync: %q", flash)
		}
		// Until every workspace shows its new run finished and its gap
		// drawn (the page reads runs before coverage, so a finished run's
		// coverage is on the same load).
		deadline := time.Now().Add(90 * time.Second)
		for {
			pending := eval[int](b, fmt.Sprintf(`[...document.querySelectorAll("section.workspace")].filter(s => {
				const r = s.querySelector("tr.run"); return !r || Number(r.dataset.run) <= %d || r.dataset.outcome === "running" }).length`, before))
			drawn := eval[int](b, `document.querySelectorAll("svg.axis rect.gap").length`)
			if pending == 0 && drawn >= 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d workspaces show no finished new run, %d gaps drawn", pending, drawn)
			}
			time.Sleep(300 * time.Millisecond)
			b.open(m.url + "/coverage")
		}
		top := eval[[]map[string]string](b, `[...document.querySelectorAll("section.workspace tr.run:first-child")].map(r => ({...r.dataset}))`)
		for _, r := range top {
			if r["trigger"] != "manual" || r["outcome"] != "partial" {
				t.Errorf("newest run %v, want a manual run ending partial (the lost half year is a gap)", r)
			}
		}
		gaps := eval[int](b, `document.querySelectorAll("svg.axis rect.gap").length`)
		open := eval[int](b, `document.querySelectorAll("table.gaps tr.open").length`)
		if gaps < 3 || open < 3 {
			t.Fatalf("after the horizon jumped: %d gaps drawn, %d listed open; want one per workspace", gaps, open)
		}
		if m := b.text(`section.workspace table.gaps`); !strings.Contains(m, "no") {
			t.Fatalf("gap not shown unacknowledged: %s", m)
		}
		writeScreenshots(b, m.url)
		// Acknowledge the first workspace's gap with a note.
		ws := eval[string](b, `document.querySelector("form.ack input[name=workspace]").value`)
		b.typeInto(`form.ack input[name=note]`, "worker was down for 200 days")
		b.submit(`form.ack button`)
		if flash := b.text(`#flash`); !strings.Contains(flash, "acknowledged") || !strings.Contains(flash, ws) {
			t.Fatalf("after acknowledging: %q", flash)
		}
		if acked := eval[int](b, fmt.Sprintf(`document.querySelectorAll('section[data-workspace=%q] svg.axis rect.acked').length`, ws)); acked != 1 {
			t.Fatalf("%s: %d acknowledged gaps drawn", ws, acked)
		}
	})
}

// runCount is how many sync runs the store recorded.
func (m *mirror) runCount() int {
	m.t.Helper()
	runs, err := m.store.ListRuns(context.Background(), "", "", 1000, 0)
	if err != nil {
		m.t.Fatal(err)
	}
	return len(runs)
}

// postForm is JavaScript that builds and submits a form; withCSRF copies
// the page's own CSRF token into it.
func postForm(action string, withCSRF bool, kv ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `(() => { const f = document.createElement("form"); f.method = "post"; f.action = %q;
		const add = (n, v) => { const i = document.createElement("input"); i.type = "hidden"; i.name = n; i.value = v; f.appendChild(i); };`, action)
	if withCSRF {
		b.WriteString(`add("csrf", document.querySelector("input[name=csrf]").value);`)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, `add(%q, %q);`, kv[i], kv[i+1])
	}
	b.WriteString(`document.body.appendChild(f); f.submit(); })()`)
	return b.String()
}

// download clicks a link that downloads and returns the file.
func (b *browser) download(sel string) []byte {
	b.t.Helper()
	dir := b.t.TempDir()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	events := chromedp.BrowserEvents(ctx, cdpbrowser.DownloadProgress) // subscribed before the click
	enabled := true
	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: &enabled}); err != nil {
		b.t.Fatal(err)
	}
	b.do(chromedp.Click(chromedp.CSS(sel)))
	for ev, err := range events {
		if err != nil {
			b.t.Fatalf("download from %s: %v", sel, err)
		}
		if ev.State == cdpbrowser.DownloadProgressStateCompleted {
			data, err := os.ReadFile(filepath.Join(dir, ev.GUID))
			if err != nil {
				b.t.Fatal(err)
			}
			return data
		}
	}
	b.t.Fatalf("download from %s did not complete", sel)
	return nil
}

// writeScreenshots saves the console's pages for the README when
// CONSOLE_SCREENSHOTS names a directory (make screenshots: see README).
func writeScreenshots(b *browser, base string) {
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	for _, shot := range []struct{ file, path string }{
		{"console.png", "/?" + query("action", "download", "object", "attachment")},
		{"console-outage.png", "/coverage"}, // console-coverage*.png: TestConsoleInBrowserBeyondHorizon
		{"console-timeline.png", "/timeline?" + query("action", "download")},
	} {
		b.open(base + shot.path)
		png := get(b, chromedp.CaptureScreenshot()) // what a 1400×1000 window shows
		if err := os.WriteFile(filepath.Join(dir, shot.file), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
		b.t.Logf("screenshot %s", filepath.Join(dir, shot.file))
	}
	b.open(base + "/coverage")
}

func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, end)
	return v
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
