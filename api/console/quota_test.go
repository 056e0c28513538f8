package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// TestQuotaPauseIsShown: while TAPD's quota penalty pauses the client, sync
// status carries its end and the console says "TAPD quota exceeded: paused
// until T" in both languages.
func TestQuotaPauseIsShown(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		fake := tapdtest.New(tapdtest.Options{Seed: 5, Projects: 1, Months: 1, RecordsPerDay: 2})
		t.Cleanup(fake.Close)
		st := storagetest.Open(t, dbURL)
		user, pw := fake.Credentials()
		waiting := make(chan struct{}, 1)
		client, err := tapd.New(tapd.Options{BaseURL: fake.URL, APIUser: user, APIPassword: pw, RequestsPerMinute: -1,
			Location: shanghai, Logger: testLogger(), Now: fake.Now,
			WaitUntil: func(ctx context.Context, _ time.Time) error { // paused until the test ends
				select {
				case waiting <- struct{}{}:
				default:
				}
				<-ctx.Done()
				return ctx.Err()
			}})
		if err != nil {
			t.Fatal(err)
		}
		ws, _ := config.ParseWorkspace(fake.Projects()[0].ID)
		sy := syncer.New(syncer.Options{Store: st, TAPD: client, Workspaces: []config.Workspace{ws}, Now: fake.Now, Logger: testLogger()})
		hs := httptest.NewServer(newAPI(t, api.Options{Store: st, Syncer: sy, Tokens: scopedTokens(), Location: shanghai, Logger: testLogger()}).Handler())
		t.Cleanup(hs.Close)

		fake.RateLimitStorm(1, false)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			sy.RunAll(ctx, syncer.RunOptions{Trigger: syncer.TriggerCLI}, "")
		}()
		t.Cleanup(func() { cancel(); <-done })
		<-waiting
		until := client.PausedUntil()
		if until.IsZero() {
			t.Fatal("PausedUntil is zero after a 429")
		}

		req, _ := http.NewRequest("GET", hs.URL+"/api/v1/sync/status", nil)
		req.Header.Set("Authorization", "Bearer "+adminTok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var status struct {
			Data []struct {
				Paused *time.Time     `json:"tapd_quota_paused_until"`
				AtRisk *syncer.AtRisk `json:"at_risk"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&status)
		resp.Body.Close()
		if err != nil || len(status.Data) != 1 || status.Data[0].Paused == nil || !status.Data[0].Paused.Equal(until) {
			t.Fatalf("status %+v (err %v), want tapd_quota_paused_until %v", status, err, until)
		}
		// A first backfill held by the pause has fetched nothing: its oldest
		// unfetched minute is TAPD's horizon, and it is at risk.
		risk := status.Data[0].AtRisk
		if risk == nil || risk.OldestUnfetched.IsZero() || !risk.ExpiresAt.After(risk.OldestUnfetched) {
			t.Fatalf("status at_risk %+v, want the oldest unfetched minute and its expiry", risk)
		}

		v := newVisitor(t, hs.URL, nil)
		v.signIn(readTok)
		when := until.In(shanghai).Format("2006-01-02 15:04:05")
		for lang, words := range map[string]string{"en": "TAPD quota exceeded: paused until", "zh": "TAPD 配额超限：暂停至"} {
			p := v.get("/coverage?lang=" + lang)
			if p.status != 200 || !strings.Contains(p.body, words) || !strings.Contains(p.body, when) {
				t.Fatalf("%s coverage page lacks %q %s:\n%s", lang, words, when, p.body)
			}
			oldest := risk.OldestUnfetched.In(shanghai).Format("2006-01-02 15:04")
			if !strings.Contains(p.body, `class="atrisk">`+oldest) {
				t.Fatalf("%s coverage page lacks the at-risk line starting %s:\n%s", lang, oldest, p.body)
			}
		}
	})
}
