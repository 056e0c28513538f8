package integrity

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func testKey(t testing.TB, name string) *Key {
	t.Helper()
	skey, err := GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCheckpointSignAndOpen(t *testing.T) {
	k := testKey(t, "tapd-mirror.example.com")
	root := tlog.RecordHash([]byte("x"))
	signed, err := k.Sign(Checkpoint{Size: 42, Root: root, Time: time.Unix(1767225600, 5e8)})
	if err != nil {
		t.Fatal(err)
	}
	wantText := "tapd-mirror.example.com\n42\n" + root.String() + "\ntime 1767225600\n\n— tapd-mirror.example.com "
	if !strings.HasPrefix(string(signed), wantText) {
		t.Fatalf("signed checkpoint:\n%s\nwant it to start with\n%s", signed, wantText)
	}
	c, err := OpenCheckpoint(signed, k.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	if c.Origin != "tapd-mirror.example.com" || c.Size != 42 || c.Root != root || c.Time.Unix() != 1767225600 {
		t.Fatalf("opened %+v", c)
	}

	// Another key, even with the same name, fails and says who signed.
	other := testKey(t, "tapd-mirror.example.com")
	_, err = OpenCheckpoint(signed, other.VerifierKey())
	if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "not signed by the trusted key") {
		t.Fatalf("other key: %v", err)
	}
	// An altered size keeps the signature line but breaks it.
	altered := bytes.Replace(signed, []byte("\n42\n"), []byte("\n43\n"), 1)
	_, err = OpenCheckpoint(altered, k.VerifierKey())
	if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "invalid") {
		t.Fatalf("altered checkpoint: %v", err)
	}
	if _, err := OpenCheckpoint(signed, "not a key"); err == nil || errors.Is(err, ErrSignature) {
		t.Fatalf("malformed key: %v", err)
	}
	// A checkpoint of another log signed with this key is refused.
	skey, vkey, _ := note.GenerateKey(nil, "log-b")
	s, _ := note.NewSigner(skey)
	foreign, _ := note.Sign(&note.Note{Text: "log-a\n1\n" + root.String() + "\n"}, s)
	if _, err := OpenCheckpoint(foreign, vkey); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), `"log-a"`) {
		t.Fatalf("origin mismatch: %v", err)
	}
	if _, err := k.Sign(Checkpoint{Origin: "log-a"}); err == nil {
		t.Fatal("signed a checkpoint of another log")
	}
}

func TestParseCheckpoint(t *testing.T) {
	root := tlog.RecordHash(nil).String()
	c, err := ParseCheckpoint([]byte("o\n7\n" + root + "\nfuture extension\ntime 5\n"))
	if err != nil || c.Size != 7 || c.Time.Unix() != 5 {
		t.Fatalf("%+v %v", c, err)
	}
	if c, err := ParseCheckpoint([]byte("o\n7\n" + root + "\n")); err != nil || !c.Time.IsZero() {
		t.Fatalf("without time: %+v %v", c, err)
	}
	for _, bad := range []string{"", "o\n7\n", "o\n07\n" + root + "\n", "o\n-1\n" + root + "\n", "o\n7\nAAAA\n",
		"\n7\n" + root + "\n", "o\n7\n" + root + "\ntime soon\n", "o\n7\n" + root} {
		if _, err := ParseCheckpoint([]byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log.key")
	k, created, err := LoadOrCreateKey(path, "tapd-mirror.test")
	if err != nil || !created {
		t.Fatalf("first use: %v created=%v", err, created)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %o", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), "PRIVATE+KEY+tapd-mirror.test+") {
		t.Fatalf("key file holds %q", b)
	}
	again, created, err := LoadOrCreateKey(path, "ignored")
	if err != nil || created || again.VerifierKey() != k.VerifierKey() || again.Name() != "tapd-mirror.test" {
		t.Fatalf("second use: %v created=%v %s", err, created, again.VerifierKey())
	}
	// The derived verifier key verifies what the key signs.
	signed, _ := k.Sign(Checkpoint{Size: 0, Root: tlog.RecordHash(nil), Time: time.Unix(1, 0)})
	if _, err := OpenCheckpoint(signed, again.VerifierKey()); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}

	os.Chmod(path, 0o644)
	if _, _, err := LoadOrCreateKey(path, "x"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "bad.key"), []byte("PRIVATE+KEY+x+00000000+AAAA\n"), 0o600)
	if _, _, err := LoadOrCreateKey(filepath.Join(dir, "bad.key"), "x"); err == nil || !strings.Contains(err.Error(), "bad.key") {
		t.Fatalf("corrupt key: %v", err)
	}
	if _, _, err := LoadOrCreateKey(filepath.Join(dir, "no", "such", "dir.key"), "x"); err == nil {
		t.Fatal("created a key in a missing directory")
	}
}

func TestLoadOrCreateKeyRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.key")
	var wg sync.WaitGroup
	keys := make([]string, 8)
	creators := make([]bool, 8)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, created, err := LoadOrCreateKey(path, "tapd-mirror.test")
			if err != nil {
				t.Error(err)
				return
			}
			keys[i], creators[i] = k.VerifierKey(), created
		}()
	}
	wg.Wait()
	n := 0
	for i := range keys {
		if keys[i] != keys[0] {
			t.Fatalf("processes ended up with different keys: %q", keys)
		}
		if creators[i] {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d callers say they created the key", n)
	}
}

func TestParseKeyDerivesTheVerifierKey(t *testing.T) {
	// Many keys, since the key data's base64 may hold '+' or '/'.
	for range 50 {
		skey, vkey, err := note.GenerateKey(nil, "tapd-mirror.test")
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParseKey(skey)
		if err != nil || k.VerifierKey() != vkey {
			t.Fatalf("derived %q, want %q (%v)", k.VerifierKey(), vkey, err)
		}
	}
	if _, err := ParseKey("tapd-mirror.test+12345678+AAAA"); err == nil {
		t.Fatal("a verifier key parsed as a signing key")
	}
}
