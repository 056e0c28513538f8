package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/report"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// The report and verify-report commands through the real program: sync
// from the fake TAPD, write the report in both forms, check them offline,
// and see a changed number refused by its path.
func TestReportCommandEndToEnd(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 3, Projects: 1, RecordsPerDay: 3})
		defer f.Close()
		dir := t.TempDir()
		env := fakeEnv(f, dbURL, f.Projects()[0].ID)
		env["TAPD_MIRROR_INTEGRITY_KEY_FILE"] = filepath.Join(dir, "signing.key")
		if _, stderr, err := run(t, env, "sync", "--log-format", "text"); err != nil {
			t.Fatalf("sync: %v\n%s", err, stderr)
		}
		vkey, _, err := run(t, env, "integrity", "pubkey")
		if err != nil {
			t.Fatal(err)
		}
		vkey = strings.TrimSpace(vkey)
		if stdout, _, err := run(t, env, "verify", "--database", "--key", vkey); err != nil || !strings.Contains(stdout, "OK:") {
			t.Fatalf("verify --database: %v %s", err, stdout)
		}
		now := f.Now().In(tapdtest.Shanghai)
		from, to := now.AddDate(0, -2, 0).Format(time.DateOnly), now.Format(time.DateOnly)
		page, doc := filepath.Join(dir, "report.html"), filepath.Join(dir, "report.json")
		for _, out := range []string{page, doc} {
			stdout, stderr, err := run(t, env, "report", "--from", from, "--to", to, "--lang", "zh", "--out", out, "--log-format", "text")
			if err != nil || !strings.Contains(stdout, "wrote "+out+": 1 targets, 3 months") {
				t.Fatalf("report: %v\n%s\n%s", err, stdout, stderr)
			}
			if stdout, _, err := run(t, env, "verify-report", out, "--key", vkey); err != nil || !strings.Contains(stdout, ": OK, signed by") {
				t.Fatalf("verify-report %s: %v %s", out, err, stdout)
			}
		}
		var d report.Document
		var r report.Report
		if raw, err := os.ReadFile(doc); err != nil || json.Unmarshal(raw, &d) != nil || json.Unmarshal(d.Report, &r) != nil {
			t.Fatalf("the JSON report does not read: %v", err)
		}
		if lv := r.Integrity.LastVerify; lv == nil || !lv.OK || !lv.Full || lv.TreeSize == 0 || r.Targets[0].MirrorCount == 0 {
			t.Fatalf("the report's last verification %+v, targets %+v", lv, r.Targets)
		}
		// The report reads the access trail, and each report made is an entry of it.
		if !r.Access.Available {
			t.Fatalf("the report's access summary: %+v", r.Access)
		}
		made, err := storagetest.Open(t, dbURL).ListAccess(context.Background(), storage.AccessFilter{Action: "report"}, 10, 0)
		if err != nil || len(made) != 2 || !strings.HasPrefix(made[0].Principal, "cli:") || made[0].Params["from"] != from || made[1].Rows != 1 {
			t.Fatalf("reports in the access trail: %+v %v", made, err)
		}
		body, _ := os.ReadFile(page)
		if !bytes.Contains(body, []byte("完整性报告")) {
			t.Fatal("the page is not in Chinese")
		}
		re := regexp.MustCompile(`(data-field="targets\[0\]\.months\[2\]\.mirror_count">)([0-9,]+)<`)
		if err := os.WriteFile(page, re.ReplaceAll(body, []byte("${1}12345<")), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err = run(t, env, "verify-report", page, "--key", vkey)
		var exit exitError
		if !errors.As(err, &exit) || exit.code != 1 || !strings.Contains(err.Error(), "targets[0].months[2].mirror_count") {
			t.Fatalf("changed page: %v", err)
		}
		// The chart recoloured, no signed value touched: the page is not the one the report makes.
		recoloured := bytes.ReplaceAll(body, []byte(`<span class="k-verified" style`), []byte(`<span class="k-gap" style`))
		if bytes.Equal(recoloured, body) {
			t.Fatal("the page has no verified coverage to recolour")
		}
		if err := os.WriteFile(page, recoloured, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err = run(t, env, "verify-report", page, "--key", vkey)
		if !errors.As(err, &exit) || exit.code != 1 || !strings.Contains(err.Error(), "altered outside the signed fields") {
			t.Fatalf("recoloured page: %v", err)
		}
		if _, _, err := run(t, env, "report", "--from", to, "--to", from, "--out", doc); !errors.As(err, &usageError{}) {
			t.Fatalf("a period ending before it starts: %v", err)
		}
		if _, _, err := run(t, env, "report", "--from", from, "--to", to, "--workspace", "nope", "--out", doc); !errors.As(err, &usageError{}) || !strings.Contains(err.Error(), "nope") {
			t.Fatalf("an unknown target: %v", err)
		}
	})
}
