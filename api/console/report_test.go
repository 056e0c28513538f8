package console_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/tapd-mirror/tapd-mirror/report"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// The report page in the browser, in English and Chinese, on both
// databases: an admin asks for a period, sees each target's months with
// the mirror's counts (which add up to the archive's own count for the
// period), and the signed page and JSON it links to verify offline, while
// a changed number in them is refused by its path.
func TestConsoleReportInBrowser(t *testing.T) {
	for _, dialect := range storagetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			m := startMirror(t, storagetest.URL(t, dialect), scopedTokens())
			b := newBrowser(t, "en-US,en;q=0.9").with(t)
			b.signIn(m.url, adminTok)
			now := time.Now().In(shanghai)
			from := time.Date(now.Year(), now.Month()-2, 1, 0, 0, 0, 0, shanghai)
			end := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, shanghai)
			want, err := m.store.CountActivities(context.Background(), storage.Filter{Source: storage.SourceTAPD, Since: from, Until: end})
			if err != nil || want == 0 {
				t.Fatalf("the archive holds %d records in the period (%v)", want, err)
			}
			words := map[string][2]string{"en": {"Completeness report", "Records in the mirror"}, "zh": {"完整性报告", "镜像中的记录数"}}
			for _, lang := range []string{"en", "zh"} {
				b.open(m.url + "/report?lang=" + lang)
				if got := b.text(`h1`); got != words[lang][0] {
					t.Fatalf("%s: heading %q", lang, got)
				}
				b.setValue(`#report-from`, from.Format(time.DateOnly))
				b.setValue(`#report-to`, now.Format(time.DateOnly))
				b.submit(`#report-form button[type=submit]`)
				if got := b.text(`#report-mirror`); got != strconv.FormatInt(want, 10) {
					t.Fatalf("%s: the report says the mirror holds %q, the archive counts %d", lang, got, want)
				}
				if got := b.text(`table.report-months thead`); !strings.Contains(got, words[lang][1]) {
					t.Fatalf("%s: month table header %q", lang, got)
				}
				rows := eval[int](b, `document.querySelectorAll("section.report-target tr[data-month]").length`)
				targets := eval[int](b, `document.querySelectorAll("section.report-target").length`)
				if targets != 3 || rows != 3*targets {
					t.Fatalf("%s: %d targets, %d month rows", lang, targets, rows)
				}
				// Each verified month of each target: TAPD's total is the mirror's.
				diffs := eval[[]string](b, `Array.from(document.querySelectorAll("td.difference")).map(e => e.textContent)`)
				for _, d := range diffs {
					if d != "0" {
						t.Fatalf("%s: differences %q", lang, diffs)
					}
				}
				for _, link := range []string{"#report-html", "#report-json"} {
					href := eval[string](b, `document.querySelector("`+link+`").getAttribute("href")`)
					body := fetchText(b, m.url, href)
					if _, err := report.Verify([]byte(body), m.key.VerifierKey()); err != nil {
						t.Fatalf("%s %s: the downloaded report does not verify: %v", lang, link, err)
					}
					if link == "#report-html" && lang == "zh" && !strings.Contains(body, "完整性报告") {
						t.Fatalf("the zh page is not in Chinese")
					}
				}
			}
		})
	}
}

// fetchText fetches path with the browser's cookies (its session) and
// returns the body: a download, which the browser would save, not show.
func fetchText(b *browser, base, path string) string {
	b.t.Helper()
	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
	if err != nil {
		b.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	for _, c := range res.Cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") {
		b.t.Fatalf("GET %s: %d %v", path, resp.StatusCode, resp.Header)
	}
	return string(body)
}

// The report page's refusals, over plain HTTP: read tokens are refused
// (the report summarises the access trail), bad dates and formats are a
// 400 naming the field, an unknown target a 404.
func TestConsoleReportRefusals(t *testing.T) {
	m := startMirror(t, storagetest.URL(t, "sqlite"), scopedTokens())
	reader := newVisitor(t, m.url, nil)
	reader.signIn(readTok)
	if p := reader.get("/report"); p.status != 403 {
		t.Fatalf("read scope: %d", p.status)
	}
	admin := newVisitor(t, m.url, nil)
	admin.signIn(adminTok)
	for _, c := range []struct {
		query  string
		status int
		says   string
	}{
		{"from=2026-13-01&to=2026-12-01", 400, "From"},
		{"from=2026-02-01&to=2026-01-01", 400, "ends before it starts"},
		{"from=2026-01-01&to=2026-02-01&format=pdf", 400, "pdf"},
		{"from=2026-01-01&to=2026-02-01&workspace=nope", 404, "nope"},
	} {
		p := admin.get("/report?lang=en&" + c.query)
		if p.status != c.status || !strings.Contains(p.body, url.QueryEscape(c.says)) && !strings.Contains(p.body, c.says) {
			t.Errorf("%s: %d, want %d saying %q", c.query, p.status, c.status, c.says)
		}
	}
}
