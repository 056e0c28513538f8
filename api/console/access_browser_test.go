package console_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// TestAccessPageInBrowser: in English and Chinese, a reader's record view
// is in the access trail an auditor reads on the console's access page; a
// reader is offered no such page and is refused it. On both databases.
func TestAccessPageInBrowser(t *testing.T) {
	const readerTok, auditorTok = "browser-read-token-00000000000000000000", "browser-audit-token-0000000000000000000"
	b0 := newBrowser(t, "en-US,en;q=0.9")
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) { accessPageInBrowser(t, b0, dialect, readerTok, auditorTok) })
	}
}

func accessPageInBrowser(t *testing.T, b0 *browser, dialect, readerTok, auditorTok string) {
	st := storagetest.Open(t, storagetest.URL(t, dialect))
	ctx := context.Background()
	id, err := st.InsertActivity(ctx, storage.Activity{Platform: "web", ActionType: "login", Username: "alice",
		Timestamp: time.Now().Add(-time.Hour), Source: storage.SourceLocal})
	if err != nil {
		t.Fatal(err)
	}
	srv := newAPI(t, api.Options{Store: st, Location: shanghai, Logger: testLogger(), Tokens: []config.Token{
		{Name: "reader", Token: readerTok, Scope: config.ScopeRead},
		{Name: "auditor", Token: auditorTok, Scope: config.ScopeAuditor}}})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	for _, lang := range []struct{ code, title, need, readerOutcome string }{
		{"en", "Access trail", "needs a token of scope auditor or admin", "ok"},
		{"zh", "访问记录", "需要 auditor 或 admin 权限的令牌", "成功"},
	} {
		t.Run(lang.code, func(t *testing.T) {
			b := b0.with(t)
			b.open(hs.URL + "/signin?lang=" + lang.code) // the switch, remembered in a cookie
			b.signIn(hs.URL, readerTok)
			if n := eval[int](b, `document.querySelectorAll("#nav-access").length`); n != 0 {
				t.Fatal("a reader is offered the access trail")
			}
			b.open(fmt.Sprintf("%s/record/%d", hs.URL, id))
			b.open(hs.URL + "/access")
			if body := b.text(`main`); !strings.Contains(body, lang.need) {
				t.Fatalf("a reader's access page says %q", body)
			}
			b.submit(`#signout button`)

			b.signIn(hs.URL, auditorTok)
			if err := srv.FlushAccess(ctx); err != nil {
				t.Fatal(err)
			}
			b.submit(`#nav-access`) // a link: submit clicks and waits for the page
			if h := b.text(`main h1`); h != lang.title {
				t.Fatalf("access page title %q, want %q", h, lang.title)
			}
			rows := b.text(`#access`)
			for _, want := range []string{"console.record", "reader", "127.0.0.1", "id=" + fmt.Sprint(id), "signin", lang.readerOutcome} {
				if !strings.Contains(rows, want) {
					t.Fatalf("the trail lacks %q:\n%s", want, rows)
				}
			}
			// Filter by principal: only the reader's entries.
			b.typeInto(`#access-filters input[name=principal]`, "reader")
			b.submit(`#access-filters button`)
			if got := eval[int](b, `document.querySelectorAll("#access tbody tr").length`); got < 3 {
				t.Fatalf("%d entries of the reader, want its sign-in, record view and refused access page at least", got)
			}
			if others := eval[int](b, `[...document.querySelectorAll("#access tbody tr td:nth-child(2)")].filter(td => td.textContent !== "reader").length`); others != 0 {
				t.Fatalf("%d entries of others after filtering by principal", others)
			}
		})
	}
}
