package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// TestConsoleForwardPageInBrowser: the forwarding page lists each
// destination's state, cursor, lag and last error as GET /api/v1/forward
// reports them, in English and Chinese, for auditors and admins only.
func TestConsoleForwardPageInBrowser(t *testing.T) {
	for _, dialect := range storagetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			m := startMirror(t, storagetest.URL(t, dialect), scopedTokens())
			rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
			defer rc.Close()
			fw, err := forward.New(forward.Options{Store: m.store, Logger: testLogger(), Poll: 5 * time.Millisecond,
				BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond, Destinations: []config.Forward{
					{Name: "siem", Kind: "webhook", URL: rc.URL, Secret: "k"},
					{Name: "down", Kind: "webhook", URL: "http://127.0.0.1:1/in", Secret: "k"}}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { fw.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			head, err := m.store.Head(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
				st, err := fw.Status(context.Background())
				if err == nil && st[0].Cursor >= head.Size && st[1].LastError != "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("forwarding did not settle: %+v %v", st, err)
				}
			}
			srv := httptest.NewServer(api.New(api.Options{Store: m.store, Syncer: m.syncer, Tokens: scopedTokens(), Location: shanghai,
				Logger: testLogger(), Forward: fw.Status}).Handler())
			defer srv.Close()

			req, _ := http.NewRequest("GET", srv.URL+"/forward", nil)
			noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			if resp, err := noFollow.Do(req); err != nil || resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("without a session: %v %v, want a redirect to sign in", resp, err)
			}
			b := newBrowser(t, "en-US,en;q=0.9").with(t)
			b.signIn(srv.URL, readTok)
			b.open(srv.URL + "/forward")
			if got := b.text("main"); !strings.Contains(got, "admin") {
				t.Fatalf("a reader sees %q, want the admin-only explanation", got)
			}
			b.signIn(srv.URL, adminTok)
			want := map[string][3]string{"en": {"Forwarding", "delivering", "retrying"}, "zh": {"转发", "投递中", "重试中"}}
			for _, lang := range []string{"en", "zh"} {
				w := want[lang]
				row := func(name, cell string) string { return b.text(`tr[data-destination="` + name + `"] td.` + cell) }
				// Each page view is itself an access-trail entry, logged just
				// after the answer: siem is caught up once it delivered the
				// views before this one, so look again until it has.
				for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
					b.open(srv.URL + "/forward?lang=" + lang)
					if row("siem", "lag-events") == "0" || time.Now().After(deadline) {
						break
					}
				}
				if got := b.text(`nav a.here`); got != w[0] {
					t.Errorf("%s: nav entry %q, want %q", lang, got, w[0])
				}
				if row("siem", "state") != w[1] || row("siem", "lag-events") != "0" || row("siem", "lag") != "0" ||
					row("siem", "last-error") != "—" {
					t.Errorf("%s: siem row: %q %q %q %q", lang, row("siem", "state"), row("siem", "lag-events"), row("siem", "lag"), row("siem", "last-error"))
				}
				if c, _ := strconv.ParseInt(row("siem", "cursor"), 10, 64); c < head.Size {
					t.Errorf("%s: siem cursor %d, want ≥ %d", lang, c, head.Size)
				}
				if row("down", "state") != w[2] || row("down", "cursor") != "0" || !strings.Contains(row("down", "last-error"), "connection refused") ||
					row("down", "failing-since") == "—" {
					t.Errorf("%s: down row: %q %q %q %q", lang, row("down", "state"), row("down", "cursor"), row("down", "last-error"), row("down", "failing-since"))
				}
				if n, _ := strconv.ParseInt(row("down", "lag-events"), 10, 64); n < head.Size {
					t.Errorf("%s: down is %d events behind, want ≥ %d", lang, n, head.Size)
				}
			}
		})
	}
}
