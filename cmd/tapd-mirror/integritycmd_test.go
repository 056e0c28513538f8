package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// TestSyncExportVerifyOffline is the auditor's path end to end: sync a
// fake TAPD, export a bundle, and verify it with nothing but the binary and
// the public key; then tamper with the database and see verify --database
// name the record.
func TestSyncExportVerifyOffline(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, dbURL string) {
		f := tapdtest.New(tapdtest.Options{Seed: 12, Projects: 2, Months: 2, RecordsPerDay: 3, CompanyRecordsPerDay: 1})
		defer f.Close()
		dir := t.TempDir()
		env := fakeEnv(f, dbURL, "projects:"+f.CompanyID()+",company:"+f.CompanyID())
		env["TAPD_MIRROR_INTEGRITY_KEY_FILE"] = filepath.Join(dir, "signing.key")
		env["TAPD_MIRROR_INTEGRITY_PUBLISH_FILE"] = filepath.Join(dir, "witness.txt")
		if _, stderr, err := run(t, env, "sync"); err != nil {
			t.Fatalf("sync: %v\n%s", err, stderr)
		}
		// The sync signed a checkpoint and handed it to the witness file.
		witness, err := os.ReadFile(env["TAPD_MIRROR_INTEGRITY_PUBLISH_FILE"])
		if err != nil || !strings.Contains(string(witness), "\n— tapd-mirror ") {
			t.Fatalf("witness file: %v %q", err, witness)
		}
		earlier := filepath.Join(dir, "earlier.txt")
		os.WriteFile(earlier, witness, 0o600)
		vkey, _, err := run(t, env, "integrity", "pubkey")
		if err != nil {
			t.Fatal(err)
		}
		vkey = strings.TrimSpace(vkey)

		// More happens: a local record, then the export signs a new checkpoint.
		st := storagetest.Open(t, dbURL)
		if _, err := st.InsertActivity(context.Background(), storage.Activity{Platform: "p", ActionType: "a", Username: "zoe", Timestamp: time.Now()}); err != nil {
			t.Fatal(err)
		}
		bundle := filepath.Join(dir, "archive.tar")
		out, stderr, err := run(t, env, "export", "--bundle", bundle)
		if err != nil || !strings.Contains(out, "wrote full bundle") {
			t.Fatalf("export: %v\n%s%s", err, out, stderr)
		}

		// Offline: no config, no database, only the key.
		out, _, err = run(t, nil, "verify", bundle, "--key", vkey, "--checkpoint", earlier)
		if err != nil || !strings.Contains(out, "OK: full bundle") || !strings.Contains(out, "is a prefix of this log") {
			t.Fatalf("verify: %v\n%s", err, out)
		}
		filtered := filepath.Join(dir, "zoe.tar")
		if out, _, err := run(t, env, "export", "--bundle", filtered, "--username", "zoe"); err != nil || !strings.Contains(out, "filtered (username=zoe)") {
			t.Fatalf("filtered export: %v %s", err, out)
		}
		if out, _, err := run(t, nil, "verify", filtered, "--key", vkey); err != nil || !strings.Contains(out, "1 records") {
			t.Fatalf("filtered verify: %v\n%s", err, out)
		}
		// A truncated copy fails and names where.
		raw, _ := os.ReadFile(bundle)
		cut := filepath.Join(dir, "cut.tar")
		os.WriteFile(cut, raw[:len(raw)*2/3], 0o600)
		if _, _, err := run(t, nil, "verify", cut, "--key", vkey); err == nil || !strings.Contains(err.Error(), "FAILED verification: event ") {
			t.Fatalf("truncated bundle: %v", err)
		}

		if out, _, err := run(t, env, "verify", "--database"); err != nil || !strings.Contains(out, "OK: every live record") {
			t.Fatalf("verify --database: %v\n%s", err, out)
		}
		var id int64
		st.DB().Get(&id, `SELECT MIN(id) FROM activity_log`)
		if _, err := st.DB().Exec(st.DB().Rebind(`UPDATE activity_log SET action_detail = 'nothing happened' WHERE id = ?`), id); err != nil {
			t.Fatal(err)
		}
		out, _, err = run(t, env, "verify", "--database")
		if err == nil || !strings.Contains(out, "PROBLEM changed") || !strings.Contains(out, "record "+itoa(id)+" differs") {
			t.Fatalf("verify --database after an UPDATE: %v\n%s", err, out)
		}
	})
}

// TestServeSignsPublishesAndVerifies: serve signs after its first sync run,
// publishes, verifies in the background, and reports it in status and
// metrics.
func TestServeSignsPublishesAndVerifies(t *testing.T) {
	f := tapdtest.New(tapdtest.Options{Seed: 13, Projects: 1, Months: 1, RecordsPerDay: 2})
	defer f.Close()
	dir := t.TempDir()
	env := fakeEnv(f, "sqlite:"+filepath.Join(dir, "m.db"), f.Projects()[0].ID)
	env["TAPD_MIRROR_INTEGRITY_PUBLISH_FILE"] = filepath.Join(dir, "witness.txt")
	env["TAPD_MIRROR_INTEGRITY_CHECKPOINT_INTERVAL"] = "1s"
	env["TAPD_MIRROR_RETENTION"] = "local=30d"
	p := start(t, env, "serve")
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Verified up to a checkpoint that holds the first run's records.
		_, body := getAuth(t, p.base+"/api/v1/integrity/status", "tok")
		var status struct {
			Data struct {
				OK         *bool `json:"ok"`
				Checkpoint *struct {
					TreeSize int64 `json:"tree_size"`
				} `json:"checkpoint"`
				Last *struct {
					TreeSize int64 `json:"tree_size"`
				} `json:"last_verification"`
			} `json:"data"`
		}
		json.Unmarshal([]byte(body), &status)
		d := status.Data
		witness, _ := os.ReadFile(env["TAPD_MIRROR_INTEGRITY_PUBLISH_FILE"])
		if d.OK != nil && *d.OK && d.Checkpoint != nil && d.Checkpoint.TreeSize > 0 && d.Last != nil &&
			d.Last.TreeSize == d.Checkpoint.TreeSize && strings.Count(string(witness), "— tapd-mirror") >= 2 {
			break
		}
		if d.OK != nil && !*d.OK {
			t.Fatalf("verification failed: %s", body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no verified, published checkpoint: %s\n%s", body, p.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The key was created beside the SQLite file.
	if st, err := os.Stat(filepath.Join(dir, "tapd-mirror.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v", err)
	}
	_, metrics := get(t, p.base+"/metrics")
	if !strings.Contains(metrics, "tapdmirror_integrity_ok 1") || !strings.Contains(metrics, "tapdmirror_integrity_checkpoint_tree_size ") {
		t.Fatalf("metrics:\n%s", metrics)
	}
	if code, body := get(t, p.base+"/api/v1/integrity/checkpoint"); code != 200 || !strings.Contains(body, `"signed":"tapd-mirror\n`) {
		t.Fatalf("checkpoint: %d %s", code, body)
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func getAuth(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
