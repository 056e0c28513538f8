package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// TestAccessTrailEndToEnd runs serve with a reader and an auditor: the
// reader's export is in the trail the auditor reads (and the reader may not
// read it); after serve stops, a trail entry deleted with plain SQL is
// named by verify --database.
func TestAccessTrailEndToEnd(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 23, Projects: 1, Months: 1, RecordsPerDay: 2})
		defer f.Close()
		env := fakeEnv(f, dbURL, f.Projects()[0].ID)
		env["TAPD_MIRROR_READ_TOKEN"] = "reader-token"
		env["TAPD_MIRROR_AUDITOR_TOKEN"] = "auditor-token"
		env["TAPD_MIRROR_INTEGRITY_KEY_FILE"] = t.TempDir() + "/signing.key"
		p := start(t, env, "serve")
		if code, body := getAuth(t, p.base+"/api/v1/activity_log/export?format=ndjson&username=nobody", "reader-token"); code != 200 {
			t.Fatalf("export: %d %s", code, body)
		}
		if code, _ := getAuth(t, p.base+"/api/v1/access", "reader-token"); code != 403 {
			t.Fatalf("a reader read the access trail: %d", code)
		}
		if code, _ := getAuth(t, p.base+"/api/v1/sync/runs", "auditor-token"); code != 200 {
			t.Fatalf("an auditor may read sync runs: %d", code)
		}
		if code, _ := getAuth(t, p.base+"/api/v1/holds", "auditor-token"); code != 200 {
			t.Fatalf("an auditor may list holds: %d", code)
		}
		req := `{"name":"x","reason":"y","filter":{}}`
		if code := postAuth(t, p.base+"/api/v1/holds", "auditor-token", req); code != 403 {
			t.Fatalf("an auditor placed a hold: %d", code)
		}
		// Entries are written right after their answers, in the background
		// (batched: within 100 ms).
		var page struct {
			Data struct {
				Entries []storage.AccessEntry `json:"entries"`
			} `json:"data"`
		}
		for range 100 {
			_, body := getAuth(t, p.base+"/api/v1/access?action=export", "auditor-token")
			json.Unmarshal([]byte(body), &page)
			if len(page.Data.Entries) > 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(page.Data.Entries) != 1 {
			t.Fatalf("export entries: %+v", page.Data.Entries)
		}
		if e := page.Data.Entries[0]; e.Principal != "auth.read_token" || e.Params["username"] != "nobody" || e.Params["format"] != "ndjson" || e.Outcome != "ok" {
			t.Fatalf("export entry: %+v", e)
		}
		if err := p.stop(); err != nil {
			t.Fatal(err)
		}
		st := storagetest.Open(t, dbURL)
		all, err := st.ListAccess(context.Background(), storage.AccessFilter{}, 100, 0)
		if err != nil || len(all) < 6 {
			t.Fatalf("trail after serve stopped: %d %v", len(all), err)
		}
		denied := 0
		for _, e := range all {
			if e.Outcome == storage.AccessDenied {
				denied++
			}
		}
		if denied != 2 {
			t.Errorf("%d denied entries, want 2 (the reader's trail read, the auditor's hold)", denied)
		}
		if out, _, err := run(t, env, "verify", "--database"); err != nil || !strings.Contains(out, "OK: every live record") {
			t.Fatalf("verify --database: %v\n%s", err, out)
		}
		// A full bundle carries the trail; offline verification counts it.
		bundle := t.TempDir() + "/archive.tar"
		if out, stderr, err := run(t, env, "export", "--bundle", bundle); err != nil {
			t.Fatalf("export: %v\n%s%s", err, out, stderr)
		}
		cli, _ := st.ListAccess(context.Background(), storage.AccessFilter{Action: "export", Newest: true}, 1, 0)
		if len(cli) != 1 || !strings.HasPrefix(cli[0].Principal, "cli:") || cli[0].Params["format"] != "bundle" || cli[0].Rows == 0 {
			t.Fatalf("the CLI export's entry: %+v", cli)
		}
		vkey, _, _ := run(t, env, "integrity", "pubkey")
		out, _, err := run(t, nil, "verify", bundle, "--key", strings.TrimSpace(vkey))
		if err != nil || !regexp.MustCompile(`, ([6-9]|\d\d+) accesses`).MatchString(out) {
			t.Fatalf("verify of a full bundle: %v\n%s", err, out)
		}
		if _, err := st.DB().Exec(st.DB().Rebind(`DELETE FROM access_log WHERE id = ?`), page.Data.Entries[0].ID); err != nil {
			t.Fatal(err)
		}
		out, _, err = run(t, env, "verify", "--database")
		if err == nil || !strings.Contains(out, "PROBLEM removed") || !strings.Contains(out, "export by \"auth.read_token\") is missing from access_log") {
			t.Fatalf("verify --database after a DELETE: %v\n%s", err, out)
		}
	})
}

func postAuth(t *testing.T, url, token, body string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRetentionPurgesTheTrailAsEvidence: the daily retention job removes
// trail entries older than access_log.retention and records the purge, and
// a records purge is an entry too; the database still verifies.
func TestRetentionPurgesTheTrailAsEvidence(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		ctx := context.Background()
		st := storagetest.Open(t, dbURL)
		old, recent := time.Now().AddDate(0, 0, -200), time.Now().AddDate(0, 0, -10)
		for _, at := range []time.Time{old, old.Add(time.Hour), recent} {
			if err := st.AppendAccess(ctx, &storage.AccessEntry{At: at, Principal: "auditor", Action: "export", Outcome: storage.AccessOK}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.InsertActivity(ctx, storage.Activity{Platform: "p", ActionType: "a", Timestamp: old, Source: storage.SourceLocal}); err != nil {
			t.Fatal(err)
		}
		cfg := config.Default()
		cfg.DatabaseURL = dbURL
		cfg.Integrity.KeyFile = t.TempDir() + "/k"
		cfg.AccessLog.Retention = config.Period{Duration: 180 * 24 * time.Hour}
		cfg.Retention = config.Retention{"local": config.Period{Duration: 30 * 24 * time.Hour}}
		a, err := newArchive(ctx, cfg, st, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		a.purge(ctx)
		es, _ := st.ListAccess(ctx, storage.AccessFilter{}, 10, 0)
		if len(es) != 3 || es[0].At.Unix() != recent.Unix() || es[1].Action != storage.AccessPurgeAction || es[1].Rows != 2 ||
			es[2].Action != "retention.purge" || es[2].Rows != 1 || es[2].Params["source"] != "local" || es[2].Principal != retentionPrincipal {
			t.Fatalf("trail after the retention job: %+v", es)
		}
		if out, _, err := run(t, map[string]string{"TAPD_MIRROR_DATABASE_URL": dbURL, "TAPD_MIRROR_INTEGRITY_KEY_FILE": cfg.Integrity.KeyFile},
			"verify", "--database"); err != nil || !strings.Contains(out, "OK: every live record") {
			t.Fatalf("verify --database after the purges: %v\n%s", err, out)
		}
	})
}
