package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/tapd/tapdtest"
)

// The whole disaster drill, through Main, restoring into each dialect.
func TestDrillEndToEnd(t *testing.T) {
	storagetest.Each(t, func(t *testing.T, target string) {
		var out, errOut syncBuffer
		m := &Main{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
		if err := m.Run(context.Background(), []string{"drill", "--dir", t.TempDir(), "--restore-into", target, "--days", "30"}); err != nil {
			t.Fatalf("drill: %v\n%s\n%s", err, out.String(), errOut.String())
		}
		for _, want := range []string{"restored full backup", "restored incremental backup", "OK: every live record matches",
			" 0 missing, 0 duplicated", "older than the horizon came from the backups", "drill passed"} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("drill output lacks %q:\n%s", want, out.String())
			}
		}
		if strings.Count(out.String(), "   took ") != 9 {
			t.Fatalf("want each of the 9 steps timed:\n%s", out.String())
		}
	})
}

// backup and restore as an operator runs them: SQLite to PostgreSQL and a
// tampered backup refused with nothing written.
func TestBackupAndRestoreCommands(t *testing.T) {
	ctx := context.Background()
	f := tapdtest.New(tapdtest.Options{Seed: 3, Projects: 1, RecordsPerDay: 3})
	defer f.Close()
	dir := t.TempDir()
	env := fakeEnv(f, "sqlite:"+filepath.Join(dir, "mirror.db"), "10074561")
	env["TAPD_MIRROR_INTEGRITY_KEY_FILE"] = filepath.Join(dir, "mirror.key")
	var out, errOut syncBuffer
	m := &Main{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
	run := func(args ...string) error { out.b.Reset(); return m.Run(ctx, args) }
	if err := run("sync"); err != nil {
		t.Fatalf("sync: %v\n%s", err, errOut.String())
	}
	// A witness gets each checkpoint appended, as publish_file would.
	witness := filepath.Join(dir, "witness.txt")
	publish := func() {
		t.Helper()
		cfg, err := config.Load("", m.Getenv)
		if err != nil {
			t.Fatal(err)
		}
		key, _, err := signingKey(cfg)
		if err != nil {
			t.Fatal(err)
		}
		st := storagetest.Open(t, env["TAPD_MIRROR_DATABASE_URL"])
		cp, _, err := st.SignCheckpoint(ctx, key, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := appendFile(witness, append(cp.Signed, '\n')); err != nil {
			t.Fatal(err)
		}
	}
	publish()
	full, inc := filepath.Join(dir, "full"), filepath.Join(dir, "inc")
	if err := run("backup", "--out", full); err != nil || !strings.Contains(out.String(), "wrote full backup") {
		t.Fatalf("backup: %v\n%s", err, out.String())
	}
	f.AddRecords("10074561", f.Now().Add(-time.Minute), 2) // inside the next sync's overlap
	if err := run("sync"); err != nil {
		t.Fatal(err)
	}
	publish() // the witness saw events the full backup does not hold
	if err := run("backup", "--out", inc, "--incremental-from", full); err != nil || !strings.Contains(out.String(), "wrote incremental") {
		t.Fatalf("incremental backup: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), ": 2 events,") {
		t.Fatalf("the incremental backup does not hold the 2 new records' events:\n%s", out.String())
	}
	if err := run("backup"); err == nil || !strings.Contains(err.Error(), "--out") {
		t.Fatalf("backup without --out: %v", err)
	}
	src := storagetest.Open(t, env["TAPD_MIRROR_DATABASE_URL"])
	want, _ := src.CountActivities(ctx, storage.Filter{})

	// A tampered copy: one record's content changed, the same length.
	packed, _ := os.ReadFile(full)
	zr, err := gzip.NewReader(bytes.NewReader(packed))
	if err != nil {
		t.Fatalf("a backup is gzip-compressed: %v", err)
	}
	data, _ := io.ReadAll(zr)
	i := bytes.Index(data, []byte(`"index":5,`))
	j := i + bytes.Index(data[i:], []byte(`"username":"`)) + len(`"username":"`)
	data[j] ^= 1
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, data, 0o600)

	if err := run("integrity", "pubkey", "--key-file", env["TAPD_MIRROR_INTEGRITY_KEY_FILE"]); err != nil {
		t.Fatal(err)
	}
	vkey := strings.TrimSpace(out.String())
	// Offline, as an auditor would: the chain verifies, the tampered copy names its event.
	if err := run("verify", full, inc, "--key", vkey); err != nil || !strings.Contains(out.String(), "OK: 2 backups verified") {
		t.Fatalf("verify of the backups: %v\n%s", err, out.String())
	}
	if err := run("verify", bad, "--key", vkey); err == nil || !strings.Contains(err.Error(), "event 5:") {
		t.Fatalf("verify of a tampered backup: %v", err)
	}
	pg := storagetest.URL(t, "postgres")
	env["TAPD_MIRROR_DATABASE_URL"] = pg
	err = run("restore", bad, "--key", vkey)
	if err == nil || !strings.Contains(err.Error(), "nothing was written") || !strings.Contains(err.Error(), "event 5:") {
		t.Fatalf("restore of a tampered backup: %v", err)
	}
	// What a witness saw must be in the restored log; its signature must be the archive's.
	if err := run("restore", full, "--key", vkey, "--checkpoint", witness); err == nil || !strings.Contains(err.Error(), "miss events a witness saw") {
		t.Fatalf("restore of a full backup older than the published checkpoint: %v", err)
	}
	forged := filepath.Join(dir, "forged.txt")
	lines := strings.Split(string(mustRead(t, witness)), "\n")
	for i := len(lines) - 1; i > 0; i-- {
		if strings.HasPrefix(lines[i], "time ") { // the last checkpoint's root is the line before
			flipped := "A" // another first character, whatever the root's was
			if lines[i-1][0] == 'A' {
				flipped = "B"
			}
			lines[i-1] = flipped + lines[i-1][1:]
			break
		}
	}
	os.WriteFile(forged, []byte(strings.Join(lines, "\n")), 0o600)
	if err := run("restore", full, inc, "--key", vkey, "--checkpoint", forged); err == nil || !strings.Contains(err.Error(), "the checkpoint was altered") {
		t.Fatalf("restore against a forged published checkpoint: %v", err)
	}
	served := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("access_token") != "s3cret" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		http.ServeFile(w, r, witness)
	}))
	defer served.Close()
	if err := run("restore", full, inc, "--key", vkey, "--checkpoint", served.URL+"/cp?access_token=wrong"); err == nil ||
		!strings.Contains(err.Error(), "403") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("restore against a witness URL that refuses: %v (want its status, not its token)", err)
	}
	if err := run("restore", full, inc, "--key", vkey, "--checkpoint", served.URL+"/cp?access_token=s3cret"); err != nil ||
		!strings.Contains(out.String(), "signatures checked with "+vkey) || !strings.Contains(out.String(), "extends the published checkpoint") {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	dst := storagetest.Open(t, pg)
	if got, _ := dst.CountActivities(ctx, storage.Filter{}); got != want || want == 0 {
		t.Fatalf("restored %d records into PostgreSQL, the SQLite mirror holds %d", got, want)
	}
	if err := run("verify", "--database", "--key", vkey); err != nil {
		t.Fatalf("verify --database after restore: %v\n%s", err, out.String())
	}
	if err := run("restore", full); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a non-empty database: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
