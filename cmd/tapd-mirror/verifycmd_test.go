package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tapd-mirror/tapd-mirror/integrity"
)

// run runs the program in-process with env and returns its stdout.
func run(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }}
	err := m.Run(context.Background(), args)
	return out.String(), errOut.String(), err
}

func TestIntegrityPubkeyCreatesTheKeyOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signing.key")
	out, stderr, err := run(t, nil, "integrity", "pubkey", "--key-file", path, "--name", "mirror.example.com")
	if err != nil {
		t.Fatal(err)
	}
	vkey := strings.TrimSpace(out)
	if !strings.HasPrefix(vkey, "mirror.example.com+") || !strings.Contains(stderr, "created signing key") {
		t.Fatalf("stdout %q stderr %q", out, stderr)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	// Later calls print the same key and create nothing; the env var names
	// the file when the flag does not.
	out, stderr, err = run(t, map[string]string{"TAPD_MIRROR_INTEGRITY_KEY_FILE": path}, "integrity", "pubkey")
	if err != nil || strings.TrimSpace(out) != vkey || stderr != "" {
		t.Fatalf("second run: %v %q %q", err, out, stderr)
	}
	if _, _, err := run(t, nil, "integrity"); !errors.As(err, &usageError{}) {
		t.Fatalf("integrity without a subcommand: %v", err)
	}
}

// writeBundle writes a full bundle of n records signed with the key in
// keyFile, and an earlier checkpoint of the first half; it returns their paths.
func writeBundle(t *testing.T, keyFile string, n int) (bundle, earlier string) {
	t.Helper()
	k, _, err := integrity.LoadOrCreateKey(keyFile, "mirror.example.com")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	evs := make([]integrity.Event, n)
	leaves := make([]tlog.Hash, n)
	for i := range evs {
		evs[i] = integrity.RecordEvent(integrity.Record{
			ID: int64(i + 1), Platform: "tapd", ActionType: "add", ActionDetail: fmt.Sprint("迭代: v", i),
			Username: "alice", Timestamp: at, Source: "tapd", SourceID: fmt.Sprint(1000 + i),
			IngestedAt: at.Add(time.Duration(i) * time.Minute),
		})
		enc, err := integrity.EncodeEvent(evs[i])
		if err != nil {
			t.Fatal(err)
		}
		leaves[i] = integrity.LeafHash(enc)
	}
	st := &integrity.MemoryStore{}
	root, err := integrity.AppendTo(st, 0, leaves)
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := k.Sign(integrity.Checkpoint{Size: int64(n), Root: root, Time: at.Add(24 * time.Hour)})
	half, _ := integrity.TreeHash(int64(n/2), st)
	early, _ := k.Sign(integrity.Checkpoint{Size: int64(n / 2), Root: half, Time: at.Add(time.Hour)})

	dir := t.TempDir()
	bundle, earlier = filepath.Join(dir, "bundle.tar"), filepath.Join(dir, "checkpoint-early.txt")
	f, err := os.Create(bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := integrity.NewBundleWriter(f, cp, k.VerifierKey(), integrity.BundleOptions{Hashes: st})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if err := w.Add(int64(i), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(earlier, early, 0o644)
	return bundle, earlier
}

// alter rewrites the bundle at path, replacing old with new in its events.
func alter(t *testing.T, path, old, new string) string {
	t.Helper()
	data, _ := os.ReadFile(path)
	tr := tar.NewReader(bytes.NewReader(data))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	replaced := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		b, _ := io.ReadAll(tr)
		if strings.HasPrefix(h.Name, "events/") && bytes.Contains(b, []byte(old)) {
			b, replaced = bytes.Replace(b, []byte(old), []byte(new), 1), true
		}
		h.Size = int64(len(b))
		tw.WriteHeader(h)
		tw.Write(b)
	}
	tw.Close()
	if !replaced {
		t.Fatalf("bundle has no %q", old)
	}
	out := path + ".altered"
	os.WriteFile(out, buf.Bytes(), 0o644)
	return out
}

func TestVerifyCommand(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "signing.key")
	bundle, earlier := writeBundle(t, keyFile, 40)
	vkey, _, err := run(t, nil, "integrity", "pubkey", "--key-file", keyFile)
	if err != nil {
		t.Fatal(err)
	}
	vkey = strings.TrimSpace(vkey)

	// Flags may follow the bundle; no config or database is touched (Getenv
	// returns nothing and no database URL is set).
	out, _, err := run(t, nil, "verify", bundle, "--key", vkey, "--checkpoint", earlier)
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	for _, want := range []string{"OK: full bundle", "40 events", "40 records", "checkpoint of 20 events", "2026-01-02T03:04:05Z .. 2026-01-02T03:43:05Z"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	// The key may also be given as a file.
	pub := filepath.Join(t.TempDir(), "key.pub")
	os.WriteFile(pub, []byte(vkey+"\n"), 0o644)
	if _, _, err := run(t, nil, "verify", "--key", pub, bundle); err != nil {
		t.Fatalf("key from a file: %v", err)
	}

	bad := alter(t, bundle, `"action_detail":"迭代: v7"`, `"action_detail":"迭代: v7 (edited)"`)
	out, _, err = run(t, nil, "verify", bad, "--key", vkey)
	if err == nil || !strings.Contains(err.Error(), "event 7:") || !strings.Contains(err.Error(), "FAILED") {
		t.Fatalf("altered bundle: %v", err)
	}
	if errors.As(err, &usageError{}) || !strings.Contains(out, "read 7 events") {
		t.Fatalf("altered bundle should fail with exit code 1 after 7 good events: %v\n%s", err, out)
	}

	other := filepath.Join(t.TempDir(), "other.key")
	otherKey, _, _ := run(t, nil, "integrity", "pubkey", "--key-file", other, "--name", "mirror.example.com")
	_, _, err = run(t, nil, "verify", bundle, "--key", strings.TrimSpace(otherKey))
	if err == nil || !strings.Contains(err.Error(), "not signed by the trusted key") {
		t.Fatalf("other key: %v", err)
	}
}

func TestVerifyCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"verify"},
		{"verify", "a.tar", "b.tar", "--key", "x"},
		{"verify", "a.tar"},
		{"verify", "a.tar", "--key", "no such key or file"},
		{"verify", "a.tar", "--bogus"},
	} {
		if _, _, err := run(t, nil, args...); !errors.As(err, &usageError{}) {
			t.Errorf("%q: error = %v; want a usage error", args, err)
		}
	}
	if _, _, err := run(t, nil, "verify", "--help"); !errors.Is(err, errHelp) {
		t.Errorf("--help: %v", err)
	}
}
