package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// The schedule's shape: a full backup, incrementals every interval chained
// on the last one, a new full backup every full_interval, old chains
// pruned to keep; the newest chain restores the archive.
func TestScheduledBackups(t *testing.T) {
	ctx := context.Background()
	st := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	skey, _ := integrity.GenerateKey("mirror.test")
	key, _ := integrity.ParseKey(skey)
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a backup"), 0o600)
	b := &backups{st: st, key: key, log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: func() time.Time { return now },
		cfg: config.Backup{Dir: dir, Interval: config.Duration{Duration: 24 * time.Hour}, FullInterval: config.Duration{Duration: 7 * 24 * time.Hour}, Keep: 1}}
	record := func() {
		if _, err := st.InsertActivity(ctx, storage.Activity{Platform: "p", ActionType: "a", Timestamp: now}); err != nil {
			t.Fatal(err)
		}
	}
	kinds := func() (out []bool) {
		files, err := listBackups(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			out = append(out, f.full)
		}
		return out
	}
	step := func(d time.Duration, wantNext time.Duration, want ...bool) {
		t.Helper()
		now = now.Add(d)
		record()
		next, err := b.take(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := kinds(); !slices.Equal(got, want) {
			t.Fatalf("after %s: backups (full?) %v, want %v", d, got, want)
		}
		if next != now.Add(wantNext) {
			t.Fatalf("next backup at %s, want %s", next, now.Add(wantNext))
		}
	}
	step(0, 24*time.Hour, true)                                   // none yet: a full one
	step(time.Hour, 23*time.Hour, true)                           // not due
	step(23*time.Hour, 24*time.Hour, true, false)                 // a day: an incremental
	step(24*time.Hour, 24*time.Hour, true, false, false)          // chained on the last incremental
	step(4*24*time.Hour, 24*time.Hour, true, false, false, false) // day 6: still incremental
	step(24*time.Hour, 24*time.Hour, true)                        // a week: a full one, the old chain pruned (keep 1)
	if last := b.Last(); !last.Full || !last.At.Equal(now) || last.Size == 0 {
		t.Fatalf("last backup %+v", last)
	}
	step(24*time.Hour, 24*time.Hour, true, false)

	// The newest chain, restored, is the archive.
	files, _ := listBackups(dir)
	var readers []io.Reader
	for _, f := range latestChain(files) {
		r, err := os.Open(f.path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		readers = append(readers, r)
	}
	dst := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	if _, err := dst.Restore(ctx, readers, storage.RestoreOptions{Key: key.VerifierKey()}); err != nil {
		t.Fatal(err)
	}
	want, _ := st.CountActivities(ctx, storage.Filter{})
	if got, _ := dst.CountActivities(ctx, storage.Filter{}); got != want || want != 7 {
		t.Fatalf("restored %d records of %d", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Fatalf("pruning removed a file that is not a backup: %v", err)
	}
}

// serve with backup.dir takes a full backup at once and reports it.
func TestServeTakesScheduledBackups(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{
		"TAPD_MIRROR_DATABASE_URL": "sqlite:" + filepath.Join(dir, "mirror.db"),
		"TAPD_MIRROR_LISTEN":       "127.0.0.1:0",
		"TAPD_MIRROR_ADMIN_TOKEN":  "tok",
		"TAPD_MIRROR_BACKUP_DIR":   filepath.Join(dir, "backups"),
	}
	p := start(t, env, "serve", "--log-format", "json")
	// The metrics report the backup once it is taken.
	var metrics string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, metrics = get(t, p.base+"/metrics"); strings.Contains(metrics, "tapdmirror_backup_size_bytes ") &&
			!strings.Contains(metrics, "tapdmirror_backup_size_bytes 0\n") {
			break
		}
	}
	for _, want := range []string{"tapdmirror_backup_age_seconds ", "tapdmirror_backup_failures_total 0"} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %q:\n%s", want, p.stderr)
		}
	}
	if strings.Contains(metrics, "tapdmirror_backup_size_bytes 0\n") {
		t.Fatalf("no backup reported:\n%s", p.stderr)
	}
	files, _ := listBackups(filepath.Join(dir, "backups"))
	if len(files) != 1 || !files[0].full {
		t.Fatalf("backups after start: %+v", files)
	}
}
