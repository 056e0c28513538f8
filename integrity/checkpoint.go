package integrity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a signed statement of the log's state: its first Size events
// hash to Root. Its text is the C2SP tlog-checkpoint format with one
// extension line for the time (SPEC.md).
type Checkpoint struct {
	Origin string // the log's name, also the signing key's name
	Size   int64
	Root   tlog.Hash
	Time   time.Time // when it was signed; kept to the second
}

// ErrSignature means a checkpoint is not signed by the expected key.
var ErrSignature = errors.New("checkpoint signature")

// Text is the checkpoint's unsigned text, the body of the signed note.
func (c Checkpoint) Text() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\ntime %d\n", c.Origin, c.Size, c.Root, c.Time.Unix())
}

// ParseCheckpoint parses a checkpoint's text (without signatures). Extension
// lines other than time are ignored, as the format asks.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return Checkpoint{}, errors.New("malformed checkpoint: not newline-terminated text")
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, errors.New("malformed checkpoint: want origin, size and root lines")
	}
	var c Checkpoint
	c.Origin = lines[0]
	if c.Origin == "" {
		return Checkpoint{}, errors.New("malformed checkpoint: empty origin")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || lines[1] != strconv.FormatInt(n, 10) {
		return Checkpoint{}, fmt.Errorf("malformed checkpoint: size %q", lines[1])
	}
	c.Size = n
	if c.Root, err = tlog.ParseHash(lines[2]); err != nil {
		return Checkpoint{}, fmt.Errorf("malformed checkpoint: root %q", lines[2])
	}
	for _, l := range lines[3:] {
		if v, ok := strings.CutPrefix(l, "time "); ok {
			s, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return Checkpoint{}, fmt.Errorf("malformed checkpoint: time %q", v)
			}
			c.Time = time.Unix(s, 0).UTC()
		}
	}
	return c, nil
}

// OpenCheckpoint verifies a signed checkpoint against a verifier key
// ("name+hash+keydata", see Key.VerifierKey) and parses it. A checkpoint not
// signed by that key fails with an error wrapping ErrSignature that says
// which keys did sign it. The origin must be the key's name.
func OpenCheckpoint(signed []byte, verifierKey string) (Checkpoint, error) {
	text, name, err := openNote(signed, verifierKey, "checkpoint")
	if err != nil {
		return Checkpoint{}, err
	}
	c, err := ParseCheckpoint([]byte(text))
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != name {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint of log %q signed by the key of log %q", ErrSignature, c.Origin, name)
	}
	return c, nil
}

// openNote verifies a signed note (what it is, for messages) against a
// verifier key and returns its text and the key's name.
func openNote(signed []byte, verifierKey, what string) (text, name string, err error) {
	v, err := note.NewVerifier(strings.TrimSpace(verifierKey))
	if err != nil {
		return "", "", fmt.Errorf("reading verifier key %q: %w", verifierKey, err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			var by []string
			for _, s := range unverified.Note.UnverifiedSigs {
				by = append(by, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
			}
			return "", "", fmt.Errorf("%w: not signed by the trusted key %s+%08x (signed by %s)",
				ErrSignature, v.Name(), v.KeyHash(), strings.Join(by, ", "))
		case errors.As(err, &invalid):
			return "", "", fmt.Errorf("%w: the signature by %s+%08x is invalid: the %s was altered",
				ErrSignature, invalid.Name, invalid.Hash, what)
		}
		return "", "", fmt.Errorf("opening %s: %w", what, err)
	}
	return n.Text, v.Name(), nil
}

// Key is the log's Ed25519 signing key.
type Key struct {
	signer   note.Signer
	verifier string
}

// GenerateKey makes a new signing key for the log named name (no spaces,
// no '+'; a host name or URL path suits) and returns its encoded secret form.
func GenerateKey(name string) (string, error) {
	skey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", fmt.Errorf("generating a key for %q: %w", name, err)
	}
	return skey, nil
}

// ParseKey reads an encoded signing key ("PRIVATE+KEY+name+hash+keydata").
func ParseKey(skey string) (*Key, error) {
	skey = strings.TrimSpace(skey)
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	// The encoded key ends in its algorithm byte and Ed25519 seed (NewSigner
	// checked both); the verifier key is derived from the public half.
	// (PRIVATE+KEY+name+hash+keydata: the key data itself may hold '+').
	data, _ := base64.StdEncoding.DecodeString(strings.SplitN(skey, "+", 5)[4])
	pub := ed25519.NewKeyFromSeed(data[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return nil, fmt.Errorf("deriving the verifier key: %w", err)
	}
	return &Key{signer: s, verifier: vkey}, nil
}

// Name is the key's (and the log's) name.
func (k *Key) Name() string { return k.signer.Name() }

// VerifierKey is the public key an auditor verifies checkpoints with.
func (k *Key) VerifierKey() string { return k.verifier }

// Sign signs a checkpoint; an empty origin becomes the key's name.
func (k *Key) Sign(c Checkpoint) ([]byte, error) {
	if c.Origin == "" {
		c.Origin = k.Name()
	}
	if c.Origin != k.Name() {
		return nil, fmt.Errorf("signing a checkpoint of log %q with the key of log %q", c.Origin, k.Name())
	}
	if c.Size < 0 {
		return nil, fmt.Errorf("signing a checkpoint of negative size %d", c.Size)
	}
	msg, err := note.Sign(&note.Note{Text: string(c.Text())}, k.signer)
	if err != nil {
		return nil, fmt.Errorf("signing checkpoint: %w", err)
	}
	return msg, nil
}

// LoadOrCreateKey reads the signing key at path. If there is no file, it
// makes a key for the log named name and writes it there, mode 0600, without
// ever leaving a partial file or replacing one written meanwhile by another
// process (created reports whether this call wrote it). A key file readable
// by others is refused.
func LoadOrCreateKey(path, name string) (k *Key, created bool, err error) {
	k, err = loadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	skey, err := GenerateKey(name)
	if err != nil {
		return nil, false, err
	}
	k, err = ParseKey(skey)
	if err != nil {
		return nil, false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return nil, false, fmt.Errorf("creating key file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(skey + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, fmt.Errorf("writing key file %s: %w", path, err)
	}
	// A hard link publishes the complete file and fails if path exists: a
	// key created meanwhile by another process wins and is used.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			k, err = loadKey(path)
			return k, false, err
		}
		return nil, false, fmt.Errorf("creating key file %s: %w", path, err)
	}
	return k, true, nil
}

func loadKey(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s is accessible by others (mode %04o): chmod 600 it", path, st.Mode().Perm())
	}
	k, err := ParseKey(string(bytes.TrimSpace(b)))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// SignNote signs text (newline-terminated) as a signed note with the log's
// key: a statement other than a checkpoint, e.g. a report's hash.
func (k *Key) SignNote(text string) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: text}, k.signer)
	if err != nil {
		return nil, fmt.Errorf("signing a note: %w", err)
	}
	return msg, nil
}

// OpenNote verifies a signed note against a verifier key and returns its
// text; a note not signed by that key fails with an error wrapping
// ErrSignature that says which keys did sign it.
func OpenNote(signed []byte, verifierKey string) (string, error) {
	text, _, err := openNote(signed, verifierKey, "note")
	return text, err
}
