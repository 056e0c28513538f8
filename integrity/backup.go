package integrity

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// BackupFormat names the backup format written in backup.json (SPEC.md §6).
const BackupFormat = "tapd-mirror-backup/1"

const (
	backupManifestName = "backup.json"
	statePattern       = "state/%08d.ndjson"
	sealName           = "seal"
	sealTag            = "tapd-mirror-backup/1 seal"
)

// BackupManifest is backup.json: where the backup's events start and how
// the log it continues is proved to be a prefix of its own.
type BackupManifest struct {
	Format string `json:"format"`
	// From is the first event's index: 0 for a full backup, the earlier
	// backup's tree size for an incremental one.
	From int64 `json:"from"`
	// FromRoot and Consistency (incremental only): the earlier backup's root
	// and the RFC 6962 consistency proof from its tree to this one's.
	FromRoot    *tlog.Hash  `json:"from_root,omitempty"`
	Consistency []tlog.Hash `json:"consistency,omitempty"`
	// Source is the dialect of the database backed up, for people.
	Source string `json:"source,omitempty"`
}

// Incremental reports whether the backup continues an earlier one.
func (m BackupManifest) Incremental() bool { return m.From > 0 }

// BackupWriter writes a backup: a full bundle's events from From on, then
// the state rows (opaque NDJSON lines), then a seal that signs the state.
type BackupWriter struct {
	events *BundleWriter
	key    *Key
	state  hash.Hash
	chunk  bytes.Buffer
	chunks int
	ended  bool
}

// NewBackupWriter starts a backup of the log state of signedCheckpoint,
// signed by key, whose events start at m.From; hashes reads the log's
// stored hashes (at least up to the checkpoint).
func NewBackupWriter(w io.Writer, key *Key, signedCheckpoint []byte, m BackupManifest, hashes tlog.HashReader) (*BackupWriter, error) {
	m.Format = BackupFormat
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	bw, err := newBundleWriter(w, signedCheckpoint, key.VerifierKey(), BundleOptions{Hashes: hashes}, m.From, append(data, '\n'), backupManifestName)
	if err != nil {
		return nil, err
	}
	return &BackupWriter{events: bw, key: key, state: sha256.New()}, nil
}

// Add writes event index (they come in order, from the manifest's From).
func (b *BackupWriter) Add(index int64, e Event) error { return b.events.Add(index, e) }

// AddEncoded is Add for an event decoded from enc (BundleWriter.AddEncoded).
func (b *BackupWriter) AddEncoded(index int64, e Event, enc []byte) error {
	return b.events.AddEncoded(index, e, enc)
}

// AddWithheld writes event index whose content was purged.
func (b *BackupWriter) AddWithheld(index int64, kind Kind, recordID int64, leaf tlog.Hash) error {
	return b.events.AddWithheld(index, kind, recordID, leaf)
}

// EndEvents writes the buffered events, reading their hashes: after it,
// the writer reads no more hashes (State and Close may follow).
func (b *BackupWriter) EndEvents() error {
	if b.ended {
		return nil
	}
	if err := b.events.endEvents(); err != nil {
		return err
	}
	b.ended = true
	return nil
}

// State writes one state line (JSON, no newline) after the last event.
func (b *BackupWriter) State(line []byte) error {
	if err := b.EndEvents(); err != nil {
		return err
	}
	if b.chunk.Len() > 0 && b.chunk.Len()+len(line)+1 > b.events.opts.ChunkSize {
		if err := b.flushState(); err != nil {
			return err
		}
	}
	b.chunk.Write(line)
	b.chunk.WriteByte('\n')
	return nil
}

func (b *BackupWriter) flushState() error {
	if b.chunk.Len() == 0 {
		return nil
	}
	b.state.Write(b.chunk.Bytes()) //nolint:errcheck // a hash never fails
	if err := b.events.file(fmt.Sprintf(statePattern, b.chunks), b.chunk.Bytes()); err != nil {
		return b.events.fail(err)
	}
	b.chunks++
	b.chunk.Reset()
	return nil
}

// Close writes the seal and ends the tar stream.
func (b *BackupWriter) Close() error {
	if err := b.EndEvents(); err != nil {
		return err
	}
	if err := b.flushState(); err != nil {
		return err
	}
	sum := b.state.Sum(nil)
	seal, err := note.Sign(&note.Note{Text: sealText(b.events.cp, b.events.from, sum)}, b.key.signer)
	if err != nil {
		return fmt.Errorf("sealing the backup: %w", err)
	}
	if err := b.events.file(sealName, seal); err != nil {
		return err
	}
	return b.events.closeTar()
}

// sealText is the text the seal signs: the backup's checkpoint, where its
// events start and the SHA-256 of its state lines.
func sealText(cp Checkpoint, from int64, state []byte) string {
	return fmt.Sprintf("%s\n%s\n%d\n%s\nfrom %d\nstate %s\n", sealTag, cp.Origin, cp.Size, cp.Root, from, base64.StdEncoding.EncodeToString(state))
}

// BackupReader reads and verifies a backup as it streams: each event as it
// is read against the signed tree (so the first bad one is named), the
// chain against the tree restored so far, and the state against the seal.
type BackupReader struct {
	Manifest   BackupManifest
	Checkpoint Checkpoint
	Key        string // the verifier key the backup was checked with

	b          *BundleReader
	ahead      []span
	tree       *Frontier // the log so far: the earlier backups' and this one's events
	next       int64
	published  *Checkpoint
	state      hash.Hash
	stateFiles int
	stateDone  bool
}

// Signed is the backup's signed checkpoint, as the backup holds it.
func (r *BackupReader) Signed() []byte { return r.b.Checkpoint }

// BackupEvent is one verified event of a backup.
type BackupEvent struct {
	BundleEntry
	Leaf tlog.Hash
}

// OpenBackup reads a backup — a tar file, gzip-compressed or not — and checks its header: the checkpoint signed
// by verifierKey (empty: by the key the backup names, which proves it was
// not damaged, not who wrote it), and, for an incremental backup, that it
// continues tree, the log restored so far from the earlier backups (nil or
// empty for a full backup). OpenBackup appends this backup's events to
// tree as they are read. published, when set, is a checkpoint published
// earlier: when the log reaches its size, its root must be published.Root.
func OpenBackup(r io.Reader, verifierKey string, tree *Frontier, published *Checkpoint) (*BackupReader, error) {
	rd, err := openBackupHeader(r, verifierKey)
	if err != nil {
		return nil, err
	}
	rd.tree, rd.published = tree, published
	if rd.tree == nil {
		rd.tree = &Frontier{}
	}
	if err := rd.checkChain(); err != nil {
		return nil, err
	}
	if rd.Checkpoint.Size > rd.Manifest.From {
		rd.ahead = []span{{0, rd.Checkpoint.Size, rd.Checkpoint.Root}}
	}
	rd.next = rd.Manifest.From
	return rd, nil
}

// openBackupHeader reads the header entries and checks the checkpoint's signature.
func openBackupHeader(r io.Reader, verifierKey string) (*BackupReader, error) {
	r, err := maybeGunzip(r)
	if err != nil {
		return nil, err
	}
	br := &BundleReader{tr: tar.NewReader(r), backup: true}
	rd := &BackupReader{b: br, state: sha256.New()}
	data, err := br.header(backupManifestName)
	if err != nil {
		return nil, fmt.Errorf("%w (not a tapd-mirror backup?)", err)
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&rd.Manifest); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, backupManifestName, err)
	}
	if rd.Manifest.Format != BackupFormat {
		return nil, fmt.Errorf("%w: format %q, this program reads %q", ErrMalformed, rd.Manifest.Format, BackupFormat)
	}
	if br.Checkpoint, err = br.header(checkpointName); err != nil {
		return nil, err
	}
	key, err := br.header(keyName)
	if err != nil {
		return nil, err
	}
	br.Key = strings.TrimSpace(string(key))
	rd.Key = strings.TrimSpace(verifierKey)
	if rd.Key == "" {
		rd.Key = br.Key
	}
	cp, err := OpenCheckpoint(br.Checkpoint, rd.Key)
	if err != nil {
		if errors.Is(err, ErrSignature) && br.Key != rd.Key {
			err = fmt.Errorf("%w; the backup names the key %s (a backup of another mirror?)", err, br.Key)
		}
		return nil, err
	}
	rd.Checkpoint = cp
	return rd, nil
}

// checkChain checks that the backup continues the tree restored so far.
func (r *BackupReader) checkChain() error {
	m, cp, have := r.Manifest, r.Checkpoint, r.tree.Size()
	switch {
	case m.From < 0 || m.From > cp.Size:
		return fmt.Errorf("%w: events from %d in a backup of a log of %d", ErrMalformed, m.From, cp.Size)
	case m.From != have && have == 0:
		return fmt.Errorf("an incremental backup (events from %d on) needs the backups before it: restore the full backup first, then the incrementals in order", m.From)
	case m.From != have:
		return fmt.Errorf("%w: this backup continues a log of %d events, the backups before it end at %d: a backup is missing, out of order, or of another mirror", ErrNotPrefix, m.From, have)
	case m.From == 0:
		return nil
	case m.FromRoot == nil:
		return fmt.Errorf("%w: an incremental backup without the earlier root", ErrMalformed)
	}
	root, err := r.tree.Root()
	if err != nil {
		return err
	}
	if *m.FromRoot != root {
		return fmt.Errorf("%w: this backup continues a log whose first %d events hash to %s, the backups before it to %s: it is of another mirror, or the log was rewritten", ErrNotPrefix, m.From, *m.FromRoot, root)
	}
	if err := tlog.CheckTree(m.Consistency, cp.Size, cp.Root, m.From, root); err != nil {
		return fmt.Errorf("%w: the consistency proof from %d to %d events does not hold: %v", ErrNotPrefix, m.From, cp.Size, err)
	}
	return nil
}

// Next returns the next event, verified, or io.EOF after the last, once
// the whole tree is known to hash to the signed root.
func (r *BackupReader) Next() (BackupEvent, error) {
	size := r.Checkpoint.Size
	e, err := r.b.Next()
	if err == io.EOF {
		if r.next != size {
			return BackupEvent{}, &EventError{Index: r.next, Err: ErrTruncated, Detail: fmt.Sprintf("the backup ends after event %d; its checkpoint has %d", r.next-1, size)}
		}
		if root, err := r.tree.Root(); err != nil || root != r.Checkpoint.Root {
			return BackupEvent{}, fmt.Errorf("%w: the events hash to %s, the checkpoint says %s", ErrMismatch, root, r.Checkpoint.Root)
		}
		return BackupEvent{}, io.EOF
	}
	if err != nil {
		return BackupEvent{}, &EventError{Index: r.next, Err: ErrMalformed, Detail: err.Error()}
	}
	switch {
	case r.next >= size:
		return BackupEvent{}, &EventError{Index: r.next, Err: ErrMismatch, Detail: fmt.Sprintf("the backup goes on past the checkpoint's %d events", size)}
	case e.Index != r.next:
		return BackupEvent{}, &EventError{Index: r.next, Err: ErrMismatch, Detail: fmt.Sprintf("the backup has event %d in its place (missing or reordered events)", e.Index)}
	}
	leaf := e.LeafHash
	if !e.Withheld {
		enc, err := EncodeEvent(e.Event)
		if err != nil {
			return BackupEvent{}, &EventError{Index: e.Index, Err: ErrMalformed, Detail: err.Error()}
		}
		leaf = LeafHash(enc)
	}
	if e.Index == r.Manifest.From && e.Index > 0 {
		r.ahead, err = seedFromProof(e.Proof, e.Index, size, r.Checkpoint.Root, leaf)
	} else {
		r.ahead, err = checkHinted(r.ahead, e, leaf)
	}
	if err != nil {
		return BackupEvent{}, &EventError{Index: e.Index, Err: ErrMismatch, Detail: err.Error()}
	}
	if _, err := r.tree.Append(leaf); err != nil {
		return BackupEvent{}, err
	}
	if p := r.published; p != nil && r.tree.Size() == p.Size {
		if root, err := r.tree.Root(); err != nil || root != p.Root {
			return BackupEvent{}, fmt.Errorf("%w: the first %d events hash to %s, the published checkpoint says %s", ErrNotPrefix, p.Size, root, p.Root)
		}
	}
	r.next++
	return BackupEvent{BundleEntry: e, Leaf: leaf}, nil
}

// seedFromProof checks the first event of an incremental backup, index,
// with its whole audit path in the tree of the given size, and returns the
// subtrees right of it that the path proves, leftmost on top: what the
// hints of the events after it are checked against.
func seedFromProof(proof tlog.RecordProof, index, size int64, root, leaf tlog.Hash) ([]span, error) {
	if err := tlog.CheckRecord(proof, size, root, index, leaf); err != nil {
		return nil, errors.New("it does not hash to the signed tree with its proof: its content or its proof was altered, or it was moved")
	}
	// The siblings on the path from the root down to index; the proof lists
	// them bottom-up.
	var path []span
	for lo, hi := int64(0), size; hi-lo > 1; {
		k := int64(1) << (bits.Len64(uint64(hi-lo-1)) - 1) // the largest power of two < hi-lo
		if index < lo+k {
			path, hi = append(path, span{lo: lo + k, hi: hi}), lo+k
		} else {
			path, lo = append(path, span{lo: lo, hi: lo + k}), lo+k
		}
	}
	if len(path) != len(proof) {
		return nil, fmt.Errorf("its proof has %d hashes, its place in the tree needs %d", len(proof), len(path))
	}
	var ahead []span
	for j, s := range path {
		if s.lo > index {
			s.hash = proof[len(path)-1-j]
			ahead = append(ahead, s)
		}
	}
	return ahead, nil
}

// NextState returns the next state line (without its newline), or io.EOF
// after the last, once the seal is checked: signed by the backup's key,
// for its checkpoint, over exactly the state lines read.
func (r *BackupReader) NextState() ([]byte, error) {
	b := r.b
	for {
		if r.stateDone {
			return nil, io.EOF
		}
		if r.stateFiles > 0 {
			data, err := b.readLine() // b.events reads the current state file
			switch {
			case err == nil:
				r.state.Write(data) //nolint:errcheck // a hash never fails
				return bytes.TrimSuffix(data, []byte("\n")), nil
			case err != io.EOF:
				return nil, fmt.Errorf("%w: reading the state: %v", ErrMalformed, err)
			case len(data) > 0:
				return nil, fmt.Errorf("%w: a state file does not end in a newline", ErrMalformed)
			}
		}
		if !b.done {
			return nil, errors.New("reading the state before the last event")
		}
		h := b.after
		b.after = nil
		if h == nil {
			var err error
			if h, err = b.tr.Next(); err != nil {
				return nil, fmt.Errorf("%w: the backup ends without its seal (truncated?): %v", ErrMalformed, err)
			}
		}
		if h.Name == sealName {
			return nil, r.checkSeal(h)
		}
		if want := fmt.Sprintf(statePattern, r.stateFiles); h.Name != want || h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%w: entry %q where %s or the seal belongs", ErrMalformed, h.Name, want)
		}
		r.stateFiles++
		if b.events == nil {
			b.events = bufio.NewReaderSize(b.tr, 64<<10)
		} else {
			b.events.Reset(b.tr)
		}
	}
}

func (r *BackupReader) checkSeal(h *tar.Header) error {
	if h.Size > maxHeaderEntry {
		return fmt.Errorf("%w: the seal is %d bytes", ErrMalformed, h.Size)
	}
	data, err := io.ReadAll(r.b.tr)
	if err != nil {
		return fmt.Errorf("%w: reading the seal: %v", ErrMalformed, err)
	}
	v, err := note.NewVerifier(r.Key)
	if err != nil {
		return err
	}
	n, err := note.Open(data, note.VerifierList(v))
	if err != nil {
		return fmt.Errorf("%w: the backup's seal (over its sync state) is not signed by %s: %v", ErrSignature, r.Key, err)
	}
	sum := r.state.Sum(nil)
	if want := sealText(r.Checkpoint, r.Manifest.From, sum); n.Text != want {
		return fmt.Errorf("%w: the backup's sync state was altered (its seal signs another state, or another checkpoint)", ErrMismatch)
	}
	if _, err := r.b.tr.Next(); err != io.EOF {
		return fmt.Errorf("%w: entries after the seal", ErrMalformed)
	}
	r.stateDone = true
	return io.EOF
}

// ReadBackupCheckpoint reads only a backup's header: its manifest and its
// signed checkpoint, checked with verifierKey (see OpenBackup). The next
// incremental backup continues it.
func ReadBackupCheckpoint(r io.Reader, verifierKey string) (Checkpoint, BackupManifest, error) {
	rd, err := openBackupHeader(r, verifierKey)
	if err != nil {
		return Checkpoint{}, BackupManifest{}, err
	}
	return rd.Checkpoint, rd.Manifest, nil
}

// maybeGunzip reads r through gzip when it starts with gzip's magic bytes
// (tapd-mirror writes its backups compressed; a plain tar reads as well).
func maybeGunzip(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(2)
	if len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
		return br, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return zr, nil
}

// IsBackup reports whether r (read from its start) is a backup rather than
// a bundle: its first entry is backup.json.
func IsBackup(r io.Reader) bool {
	r, err := maybeGunzip(r)
	if err != nil {
		return false
	}
	h, err := tar.NewReader(r).Next()
	return err == nil && h.Name == backupManifestName
}

// BackupSummary describes a verified chain of backups.
type BackupSummary struct {
	Checkpoint Checkpoint // the last backup's
	Backups    int
	Events     int64 // in the backups
	Withheld   int64 // of them, events whose content was purged
	StateLines int64
}

// VerifyBackups checks a chain of backups offline — a full backup, then its
// incrementals in order — as a restore would, without restoring: every
// event against the signed tree, each link's consistency, each seal.
// With earlier, the chain's log must extend it.
func VerifyBackups(backups []io.Reader, verifierKey string, earlier *Checkpoint) (BackupSummary, error) {
	var sum BackupSummary
	tree := &Frontier{}
	for i, f := range backups {
		rd, err := OpenBackup(f, verifierKey, tree, earlier)
		if err != nil {
			return sum, fmt.Errorf("backup %d: %w", i+1, err)
		}
		verifierKey = rd.Key // the later backups must be signed by the same key
		for {
			e, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return sum, fmt.Errorf("backup %d: %w", i+1, err)
			}
			sum.Events++
			if e.Withheld {
				sum.Withheld++
			}
		}
		for {
			_, err := rd.NextState()
			if err == io.EOF {
				break
			}
			if err != nil {
				return sum, fmt.Errorf("backup %d: %w", i+1, err)
			}
			sum.StateLines++
		}
		sum.Checkpoint, sum.Backups = rd.Checkpoint, i+1
	}
	if earlier != nil && earlier.Size > tree.Size() {
		return sum, fmt.Errorf("%w: the earlier checkpoint has %d events, the backups only %d", ErrNotPrefix, earlier.Size, tree.Size())
	}
	return sum, nil
}
