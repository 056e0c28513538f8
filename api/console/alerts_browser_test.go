package console_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/alert"
	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// The alerts page lists the rules' firings in both languages, reached from
// the nav, and each firing's link opens the search of exactly the records
// it counted.
func TestConsoleAlertsInBrowser(t *testing.T) {
	for _, dialect := range storagetest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			st := storagetest.Open(t, storagetest.URL(t, dialect))
			ctx := context.Background()
			at := time.Now().Add(-30 * time.Minute).Truncate(time.Minute)
			var batch []storage.Activity
			for i := range 6 {
				batch = append(batch, storage.Activity{Platform: "tapd", Serial: "20001", ActionType: "download", ActionDetail: "附件: a.pdf",
					Username: "王芳", Timestamp: at.Add(time.Duration(i) * time.Minute).UTC(), Source: storage.SourceTAPD,
					SourceID: fmt.Sprint(900 + i), WorkspaceID: "20001", Extra: map[string]string{"ip": "10.1.1.1", "operate_object_key": "attachment"}})
			}
			batch = append(batch, storage.Activity{Platform: "tapd", Serial: "20001", ActionType: "download", Username: "李雷",
				Timestamp: at.UTC(), Source: storage.SourceTAPD, SourceID: "999", WorkspaceID: "20001"})
			if _, err := st.UpsertMirrored(ctx, batch); err != nil {
				t.Fatal(err)
			}
			e, err := alert.New(alert.Options{Store: st, Location: shanghai, Rules: []config.AlertRule{{Name: "bulk-download",
				Match: config.AlertMatch{ActionType: "download"}, Notify: []string{"ops"},
				Threshold: &config.AlertThreshold{Count: 5, Window: config.Duration{Duration: time.Hour}}}}})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.CatchUp(ctx); err != nil {
				t.Fatal(err)
			}
			fired, err := st.ListAlertFirings(ctx, storage.AlertQuery{Limit: 10})
			if err != nil || len(fired) != 1 {
				t.Fatalf("firings %+v, %v", fired, err)
			}
			hs := httptest.NewServer(api.New(api.Options{Store: st, Tokens: scopedTokens(), Location: shanghai, Logger: testLogger()}).Handler())
			t.Cleanup(hs.Close)
			b := newBrowser(t, "en-US,en;q=0.9").with(t)
			b.signIn(hs.URL, readTok)
			for lang, want := range map[string][]string{"en": {"Alerts", "Alert firings", "sent to"}, "zh": {"告警", "告警记录", "发送至"}} {
				b.open(hs.URL + "/?lang=" + lang)
				b.evalAndWait(`document.querySelector('nav a[href="/alerts"]').click()`)
				if got := b.text(`nav a.here`); got != want[0] {
					t.Fatalf("%s: nav shows %q here, want %q", lang, got, want[0])
				}
				if got := b.text(`h1`); got != want[1] {
					t.Fatalf("%s: title %q", lang, got)
				}
				if got := b.text(`#firings thead`); !strings.Contains(strings.ToLower(got), strings.ToLower(want[2])) {
					t.Fatalf("%s: table head %q", lang, got)
				}
				if got := b.text(`#firings td.key`); got != "王芳" {
					t.Fatalf("%s: firing for %q", lang, got)
				}
				if got := b.text(`#firings td.count`); got != "5" {
					t.Fatalf("%s: count %q", lang, got)
				}
			}
			b.evalAndWait(`document.querySelector('#firings a.records').click()`)
			var want []int64
			rows, err := st.ListActivities(ctx, storage.Filter{Username: "王芳"}, 100, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range rows {
				if a.ID >= fired[0].FirstRecordID && a.ID <= fired[0].LastRecordID {
					want = append(want, a.ID)
				}
			}
			got := b.rowIDs()
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) || int64(len(got)) != fired[0].Count {
				t.Fatalf("the firing's records link shows %v, want %v (%d records) at %s", got, want, fired[0].Count, b.location())
			}
		})
	}
}
