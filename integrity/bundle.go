package integrity

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tapd-mirror/tapd-mirror/internal/jsontext"
)

// BundleFormat names the bundle format written in bundle.json.
const BundleFormat = "tapd-mirror-bundle/1"

// Names of a bundle's tar entries, in the order they must appear.
const (
	manifestName   = "bundle.json"
	checkpointName = "checkpoint"
	keyName        = "key.pub"
	eventsPattern  = "events/%08d.ndjson"
)

// Limits a reader puts on what it buffers, so a hostile bundle cannot make
// it hold more than a few megabytes.
const (
	maxHeaderEntry = 64 << 10
	maxLine        = 16 << 20
	// writeBatch bounds the events a writer holds before reading their
	// hashes in one ReadHashes call.
	writeBatch      = 1024
	writeBatchBytes = 4 << 20
	// defaultChunk is the size of an events file: tar needs each entry's
	// size up front, so the writer buffers one chunk at a time.
	defaultChunk = 4 << 20
)

// ErrMalformed means a bundle does not follow the format.
var ErrMalformed = errors.New("malformed bundle")

type manifest struct {
	Format   string `json:"format"`
	Filtered bool   `json:"filtered"`
	Filter   string `json:"filter,omitempty"`
}

// BundleEntry is one event of a bundle.
type BundleEntry struct {
	Index int64
	// Event is the event's content. When Withheld, only Kind and RecordID
	// (or Record.ID) are set, as the bundle states them: they are not
	// covered by any hash.
	Event Event
	// Withheld means the content is gone (purged): LeafHash, the event's
	// leaf hash, stands in for it.
	Withheld bool
	LeafHash tlog.Hash
	// Hints (full bundles) and Proof (filtered bundles): see SPEC.md.
	Hints []tlog.Hash
	Proof tlog.RecordProof
}

// line is a BundleEntry as one NDJSON line.
type line struct {
	Index    int64       `json:"index"`
	Kind     Kind        `json:"kind"`
	Record   *recordJSON `json:"record,omitempty"`
	Prev     int64       `json:"prev,omitempty"`
	RecordID int64       `json:"record_id,omitempty"`
	Token    string      `json:"token,omitempty"`
	Policy   string      `json:"policy,omitempty"`
	Hold     *holdJSON   `json:"hold,omitempty"`
	Access   *accessJSON `json:"access,omitempty"`
	Time     *int64      `json:"time,omitempty"`
	LeafHash *tlog.Hash  `json:"leaf_hash,omitempty"`
	Hints    []tlog.Hash `json:"hints,omitempty"`
	Proof    []tlog.Hash `json:"proof,omitempty"`
}

type recordJSON struct {
	ID           int64             `json:"id"`
	Platform     string            `json:"platform"`
	Serial       string            `json:"serial"`
	ActionType   string            `json:"action_type"`
	ActionDetail string            `json:"action_detail"`
	Username     string            `json:"username"`
	Timestamp    int64             `json:"timestamp"`
	Source       string            `json:"source"`
	SourceID     string            `json:"source_id"`
	WorkspaceID  string            `json:"workspace_id"`
	Extra        map[string]string `json:"extra"`
	IngestedAt   int64             `json:"ingested_at"`
}

type accessJSON struct {
	ID           int64             `json:"id"`
	Principal    string            `json:"principal"`
	SourceIP     string            `json:"source_ip"`
	ForwardedFor string            `json:"forwarded_for"`
	Action       string            `json:"action"`
	Params       map[string]string `json:"params"`
	Rows         int64             `json:"rows"`
	Outcome      string            `json:"outcome"`
}

type holdJSON struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Reason string `json:"reason"`
	Filter string `json:"filter"`
}

func toLine(e BundleEntry) line {
	ev := e.Event
	l := line{Index: e.Index, Kind: ev.Kind, Prev: ev.Prev, RecordID: ev.RecordID, Token: ev.Token, Policy: ev.Policy,
		Hints: e.Hints, Proof: e.Proof}
	if e.Withheld {
		h := e.LeafHash
		return line{Index: e.Index, Kind: ev.Kind, RecordID: ev.RecordID, LeafHash: &h, Hints: e.Hints, Proof: e.Proof}
	}
	if r := ev.Record; r != nil {
		extra := r.Extra
		if extra == nil {
			extra = map[string]string{}
		}
		l.Record = &recordJSON{ID: r.ID, Platform: r.Platform, Serial: r.Serial, ActionType: r.ActionType,
			ActionDetail: r.ActionDetail, Username: r.Username, Timestamp: r.Timestamp.Unix(), Source: r.Source,
			SourceID: r.SourceID, WorkspaceID: r.WorkspaceID, Extra: extra, IngestedAt: r.IngestedAt.Unix()}
	}
	if h := ev.Hold; h != nil {
		l.Hold = &holdJSON{ID: h.ID, Name: h.Name, Reason: h.Reason, Filter: h.Filter}
	}
	if a := ev.Access; a != nil {
		params := a.Params
		if params == nil {
			params = map[string]string{}
		}
		l.Access = &accessJSON{ID: a.ID, Principal: a.Principal, SourceIP: a.SourceIP, ForwardedFor: a.ForwardedFor,
			Action: a.Action, Params: params, Rows: a.Rows, Outcome: a.Outcome}
	}
	if !ev.Time.IsZero() {
		t := ev.Time.Unix()
		l.Time = &t
	}
	return l
}

// appendLine appends l as one NDJSON line: what encoding/json writes
// (without HTML escaping) for line, written by hand, since reflection was
// most of a backup's time.
func appendLine(b []byte, l line) []byte {
	var scratch []byte
	str := func(b []byte, s string) []byte {
		scratch = append(scratch[:0], s...)
		return jsontext.AppendString(b, scratch)
	}
	num := func(b []byte, name string, v int64) []byte {
		return strconv.AppendInt(append(b, name...), v, 10)
	}
	hashes := func(b []byte, name string, hs []tlog.Hash) []byte {
		b = append(b, name...)
		for i, h := range hs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(append(append(b, '"'), h.String()...), '"')
		}
		return append(b, ']')
	}
	b = num(b, `{"index":`, l.Index)
	b = str(append(b, `,"kind":`...), string(l.Kind))
	if r := l.Record; r != nil {
		b = num(b, `,"record":{"id":`, r.ID)
		b = str(append(b, `,"platform":`...), r.Platform)
		b = str(append(b, `,"serial":`...), r.Serial)
		b = str(append(b, `,"action_type":`...), r.ActionType)
		b = str(append(b, `,"action_detail":`...), r.ActionDetail)
		b = str(append(b, `,"username":`...), r.Username)
		b = num(b, `,"timestamp":`, r.Timestamp)
		b = str(append(b, `,"source":`...), r.Source)
		b = str(append(b, `,"source_id":`...), r.SourceID)
		b = str(append(b, `,"workspace_id":`...), r.WorkspaceID)
		b = jsontext.AppendStringMap(append(b, `,"extra":`...), r.Extra)
		b = append(num(b, `,"ingested_at":`, r.IngestedAt), '}')
	}
	if l.Prev != 0 {
		b = num(b, `,"prev":`, l.Prev)
	}
	if l.RecordID != 0 {
		b = num(b, `,"record_id":`, l.RecordID)
	}
	if l.Token != "" {
		b = str(append(b, `,"token":`...), l.Token)
	}
	if l.Policy != "" {
		b = str(append(b, `,"policy":`...), l.Policy)
	}
	if h := l.Hold; h != nil {
		b = num(b, `,"hold":{"id":`, h.ID)
		b = str(append(b, `,"name":`...), h.Name)
		b = str(append(b, `,"reason":`...), h.Reason)
		b = append(str(append(b, `,"filter":`...), h.Filter), '}')
	}
	if a := l.Access; a != nil {
		b = num(b, `,"access":{"id":`, a.ID)
		b = str(append(b, `,"principal":`...), a.Principal)
		b = str(append(b, `,"source_ip":`...), a.SourceIP)
		b = str(append(b, `,"forwarded_for":`...), a.ForwardedFor)
		b = str(append(b, `,"action":`...), a.Action)
		b = jsontext.AppendStringMap(append(b, `,"params":`...), a.Params)
		b = num(b, `,"rows":`, a.Rows)
		b = append(str(append(b, `,"outcome":`...), a.Outcome), '}')
	}
	if l.Time != nil {
		b = num(b, `,"time":`, *l.Time)
	}
	if l.LeafHash != nil {
		b = append(append(append(b, `,"leaf_hash":"`...), l.LeafHash.String()...), '"')
	}
	if len(l.Hints) > 0 {
		b = hashes(b, `,"hints":[`, l.Hints)
	}
	if len(l.Proof) > 0 {
		b = hashes(b, `,"proof":[`, l.Proof)
	}
	return append(b, '}', '\n')
}

func (l line) entry() BundleEntry {
	e := BundleEntry{Index: l.Index, Hints: l.Hints, Proof: l.Proof}
	ev := Event{Kind: l.Kind, Prev: l.Prev, RecordID: l.RecordID, Token: l.Token, Policy: l.Policy}
	if r := l.Record; r != nil {
		ev.Record = &Record{ID: r.ID, Platform: r.Platform, Serial: r.Serial, ActionType: r.ActionType,
			ActionDetail: r.ActionDetail, Username: r.Username, Timestamp: time.Unix(r.Timestamp, 0).UTC(),
			Source: r.Source, SourceID: r.SourceID, WorkspaceID: r.WorkspaceID, Extra: r.Extra,
			IngestedAt: time.Unix(r.IngestedAt, 0).UTC()}
	}
	if h := l.Hold; h != nil {
		ev.Hold = &Hold{ID: h.ID, Name: h.Name, Reason: h.Reason, Filter: h.Filter}
	}
	if a := l.Access; a != nil {
		ev.Access = &Access{ID: a.ID, Principal: a.Principal, SourceIP: a.SourceIP, ForwardedFor: a.ForwardedFor,
			Action: a.Action, Params: a.Params, Rows: a.Rows, Outcome: a.Outcome}
	}
	if l.Time != nil {
		ev.Time = time.Unix(*l.Time, 0).UTC()
	}
	if l.LeafHash != nil {
		e.Withheld, e.LeafHash = true, *l.LeafHash
	}
	e.Event = ev
	return e
}

// withheldWithContent reports a withheld line that also carries content,
// which would be ambiguous.
func (l line) withheldWithContent() bool {
	return l.LeafHash != nil && (l.Record != nil || l.Hold != nil || l.Access != nil || l.Prev != 0 || l.Token != "" || l.Policy != "" || l.Time != nil)
}

// BundleOptions configure a BundleWriter.
type BundleOptions struct {
	// Filtered makes a filtered bundle: any subset of the events, in
	// increasing index order, each with its inclusion proof. Otherwise the
	// bundle is full: every event from 0 to the checkpoint's size, in order.
	Filtered bool
	// Filter describes the selection of a filtered bundle, for people.
	Filter string
	// Hashes reads the log's stored hashes (at least up to the checkpoint),
	// for the hints and proofs and to check each event against its leaf.
	Hashes tlog.HashReader
	// ChunkSize is the size in bytes of each events file (default 4 MiB).
	ChunkSize int
}

// BundleWriter writes a bundle to a stream. Memory stays flat in the number
// of events: it holds one batch of events and one chunk of NDJSON at a time.
type BundleWriter struct {
	tw      *tar.Writer
	opts    BundleOptions
	cp      Checkpoint
	from    int64 // the first event of a full bundle or backup (a backup's may be > 0)
	next    int64 // full: the next index expected; filtered: the least allowed
	pending []BundleEntry
	bytes   int
	line    bytes.Buffer
	chunk   bytes.Buffer
	chunks  int
	err     error
}

// NewBundleWriter starts a bundle for the log state of signedCheckpoint,
// which must verify with verifierKey, and writes its header entries.
func NewBundleWriter(w io.Writer, signedCheckpoint []byte, verifierKey string, opts BundleOptions) (*BundleWriter, error) {
	m, _ := json.Marshal(manifest{Format: BundleFormat, Filtered: opts.Filtered, Filter: opts.Filter})
	return newBundleWriter(w, signedCheckpoint, verifierKey, opts, 0, append(m, '\n'), manifestName)
}

// newBundleWriter starts the events of a bundle, or of a backup whose
// events start at from, after the header entries: the manifest (named
// manifestAs), the checkpoint and the key.
func newBundleWriter(w io.Writer, signedCheckpoint []byte, verifierKey string, opts BundleOptions, from int64, m []byte, manifestAs string) (*BundleWriter, error) {
	cp, err := OpenCheckpoint(signedCheckpoint, verifierKey)
	if err != nil {
		return nil, fmt.Errorf("starting a bundle: %w", err)
	}
	if opts.Hashes == nil {
		return nil, errors.New("starting a bundle: no hash reader")
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = defaultChunk
	}
	if from < 0 || from > cp.Size {
		return nil, fmt.Errorf("starting a bundle at event %d of a log of %d", from, cp.Size)
	}
	b := &BundleWriter{tw: tar.NewWriter(w), opts: opts, cp: cp, from: from, next: from}
	for _, f := range []struct {
		name string
		data []byte
	}{{manifestAs, m}, {checkpointName, signedCheckpoint}, {keyName, []byte(strings.TrimSpace(verifierKey) + "\n")}} {
		if err := b.file(f.name, f.data); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (b *BundleWriter) file(name string, data []byte) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: b.cp.Time, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := b.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing bundle entry %s: %w", name, err)
	}
	if _, err := b.tw.Write(data); err != nil {
		return fmt.Errorf("writing bundle entry %s: %w", name, err)
	}
	return nil
}

// Add writes event index. The event is copied: the caller may reuse it.
func (b *BundleWriter) Add(index int64, e Event) error {
	enc, err := EncodeEvent(e)
	if err != nil {
		return fmt.Errorf("adding event %d to the bundle: %w", index, err)
	}
	if e.Record != nil {
		r := *e.Record
		r.Extra = maps.Clone(r.Extra)
		e.Record = &r
	}
	if e.Hold != nil {
		h := *e.Hold
		e.Hold = &h
	}
	return b.add(BundleEntry{Index: index, Event: e, LeafHash: LeafHash(enc)}, len(enc))
}

// AddEncoded is Add for an event whose canonical encoding enc is at hand
// (DecodeEvent(enc) returned e): nothing is encoded again, and e is kept as
// it is, so the caller must not change it afterwards.
func (b *BundleWriter) AddEncoded(index int64, e Event, enc []byte) error {
	return b.add(BundleEntry{Index: index, Event: e, LeafHash: LeafHash(enc)}, len(enc))
}

// AddWithheld writes event index whose content is gone (purged): its leaf
// hash, and for people its kind and record id.
func (b *BundleWriter) AddWithheld(index int64, kind Kind, recordID int64, leaf tlog.Hash) error {
	return b.add(BundleEntry{Index: index, Event: Event{Kind: kind, RecordID: recordID}, Withheld: true, LeafHash: leaf}, 0)
}

// add queues e, whose encoding has size bytes, and writes the queue when
// it is full.
func (b *BundleWriter) add(e BundleEntry, size int) error {
	if b.err != nil {
		return b.err
	}
	switch {
	case e.Index >= b.cp.Size:
		return b.fail(fmt.Errorf("adding event %d to a bundle of a log of %d events", e.Index, b.cp.Size))
	case !b.opts.Filtered && e.Index != b.next:
		return b.fail(fmt.Errorf("adding event %d to a full bundle: event %d comes next", e.Index, b.next))
	case b.opts.Filtered && e.Index < b.next:
		return b.fail(fmt.Errorf("adding event %d to a filtered bundle after event %d: indexes must increase", e.Index, b.next-1))
	}
	b.next = e.Index + 1
	b.pending = append(b.pending, e)
	b.bytes += size
	if len(b.pending) >= writeBatch || b.bytes >= writeBatchBytes {
		return b.flushPending()
	}
	return nil
}

func (b *BundleWriter) fail(err error) error {
	b.err = err
	return err
}

// firstSubtree is the size of the largest subtree of a tree of size n whose
// first leaf is i: the whole tree for leaf 0, otherwise the complete
// subtree aligned at i or, at the right edge, what is left of the tree.
func firstSubtree(i, n int64) int64 {
	if i == 0 {
		return n
	}
	return min(i&-i, n-i)
}

// hintCount is how many hints event i carries in a full bundle of a tree of
// size n: the depth of its first subtree.
func hintCount(i, n int64) int { return depth(firstSubtree(i, n)) }

// depth is the depth of the RFC 6962 tree of size leaves, ⌈log2 size⌉: the
// length of the proof of its first leaf.
func depth(size int64) int { return bits.Len64(uint64(size - 1)) }

// fullProof reports whether event i carries its whole audit path: the first
// event of a backup that starts after event 0, whose subtree no earlier
// event's hints prove (SPEC.md §6).
func (b *BundleWriter) fullProof(i int64) bool { return !b.opts.Filtered && b.from > 0 && i == b.from }

// flushPending reads the hashes the pending events need in one call, checks
// each event against its stored leaf hash, and writes their lines.
func (b *BundleWriter) flushPending() error {
	if len(b.pending) == 0 {
		return nil
	}
	n := b.cp.Size
	// Learn which hashes the proofs need by running tlog on a reader that
	// only records, then fetch them all at once.
	need := map[int64]bool{}
	record := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		for _, x := range indexes {
			need[x] = true
		}
		return make([]tlog.Hash, len(indexes)), nil
	})
	for _, e := range b.pending {
		need[tlog.StoredHashIndex(0, e.Index)] = true
		if b.opts.Filtered || b.fullProof(e.Index) || hintCount(e.Index, n) > 0 {
			if _, err := tlog.ProveRecord(n, e.Index, record); err != nil {
				return b.fail(fmt.Errorf("proving event %d: %w", e.Index, err))
			}
		}
	}
	indexes := make([]int64, 0, len(need))
	for x := range need {
		indexes = append(indexes, x)
	}
	slices.Sort(indexes)
	hs, err := b.opts.Hashes.ReadHashes(indexes)
	if err == nil && len(hs) != len(indexes) {
		err = fmt.Errorf("got %d hashes for %d indexes", len(hs), len(indexes))
	}
	if err != nil {
		return b.fail(fmt.Errorf("reading the hashes of events %d to %d: %w", b.pending[0].Index, b.pending[len(b.pending)-1].Index, err))
	}
	got := make(map[int64]tlog.Hash, len(indexes))
	for i, x := range indexes {
		got[x] = hs[i]
	}
	fetched := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			out[i] = got[x]
		}
		return out, nil
	})
	for _, e := range b.pending {
		stored := got[tlog.StoredHashIndex(0, e.Index)]
		if e.LeafHash != stored {
			return b.fail(fmt.Errorf("writing event %d: its leaf hash %s is not the one the log stores (%s)", e.Index, e.LeafHash, stored))
		}
		if m := hintCount(e.Index, n); b.opts.Filtered || b.fullProof(e.Index) || m > 0 {
			p, err := tlog.ProveRecord(n, e.Index, fetched)
			if err != nil {
				return b.fail(fmt.Errorf("proving event %d: %w", e.Index, err))
			}
			if b.opts.Filtered || b.fullProof(e.Index) {
				e.Proof = p
			} else {
				e.Hints = p[:m]
			}
		}
		b.line.Reset()
		b.line.Write(appendLine(b.line.AvailableBuffer(), toLine(e)))
		if b.chunk.Len() > 0 && b.chunk.Len()+b.line.Len() > b.opts.ChunkSize {
			if err := b.flushChunk(); err != nil {
				return err
			}
		}
		b.chunk.Write(b.line.Bytes())
	}
	b.pending, b.bytes = b.pending[:0], 0
	return nil
}

func (b *BundleWriter) flushChunk() error {
	if b.chunk.Len() == 0 {
		return nil
	}
	if err := b.file(fmt.Sprintf(eventsPattern, b.chunks), b.chunk.Bytes()); err != nil {
		return b.fail(err)
	}
	b.chunks++
	b.chunk.Reset()
	return nil
}

// Close writes what is buffered and ends the tar stream (not the underlying
// writer). A full bundle must have every event of its checkpoint by then.
func (b *BundleWriter) Close() error {
	if err := b.endEvents(); err != nil {
		return err
	}
	return b.closeTar()
}

// endEvents writes the buffered events; a full bundle (or backup) must have
// every event of its checkpoint by then.
func (b *BundleWriter) endEvents() error {
	if b.err != nil {
		return b.err
	}
	if err := b.flushPending(); err != nil {
		return err
	}
	if !b.opts.Filtered && b.next != b.cp.Size {
		return b.fail(fmt.Errorf("closing a full bundle after %d of the checkpoint's %d events", b.next, b.cp.Size))
	}
	return b.flushChunk()
}

func (b *BundleWriter) closeTar() error {
	if err := b.tw.Close(); err != nil {
		return b.fail(fmt.Errorf("finishing the bundle: %w", err))
	}
	b.err = errors.New("bundle writer is closed")
	return nil
}

// BundleReader reads a bundle from a stream, one event at a time.
type BundleReader struct {
	Filtered   bool
	Filter     string
	Checkpoint []byte // the signed checkpoint, not yet verified
	Key        string // the verifier key the bundle names, not to be trusted
	tr         *tar.Reader
	events     *bufio.Reader // the current events file
	chunks     int           // events files opened so far
	long       []byte        // a line longer than the buffer, assembled
	done       bool
	// backup: entries other than events files end the events (Next returns
	// io.EOF) and the first of them is kept in after.
	backup bool
	after  *tar.Header
}

// OpenBundle reads a bundle's header entries.
func OpenBundle(r io.Reader) (*BundleReader, error) {
	b := &BundleReader{tr: tar.NewReader(r)}
	var m manifest
	for _, name := range []string{manifestName, checkpointName, keyName} {
		data, err := b.header(name)
		if err != nil {
			return nil, err
		}
		switch name {
		case manifestName:
			d := json.NewDecoder(bytes.NewReader(data))
			d.DisallowUnknownFields()
			if err := d.Decode(&m); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, name, err)
			}
			if m.Format != BundleFormat {
				return nil, fmt.Errorf("%w: format %q, this program reads %q", ErrMalformed, m.Format, BundleFormat)
			}
			b.Filtered, b.Filter = m.Filtered, m.Filter
		case checkpointName:
			b.Checkpoint = data
		case keyName:
			b.Key = strings.TrimSpace(string(data))
		}
	}
	return b, nil
}

func (b *BundleReader) header(name string) ([]byte, error) {
	h, err := b.tr.Next()
	if err != nil {
		return nil, fmt.Errorf("%w: reading entry %s: %v", ErrMalformed, name, err)
	}
	if h.Name != name || h.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("%w: entry %q where %s belongs", ErrMalformed, h.Name, name)
	}
	if h.Size > maxHeaderEntry {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrMalformed, name, h.Size)
	}
	data, err := io.ReadAll(b.tr)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrMalformed, name, err)
	}
	return data, nil
}

// Next returns the next event, or io.EOF after the last.
func (b *BundleReader) Next() (BundleEntry, error) {
	for !b.done {
		if b.events != nil {
			data, err := b.readLine()
			switch {
			case err == nil:
				return parseLine(data)
			case err != io.EOF:
				return BundleEntry{}, fmt.Errorf("%w: reading %s: %v", ErrMalformed, fmt.Sprintf(eventsPattern, b.chunks-1), err)
			case len(data) > 0:
				return BundleEntry{}, fmt.Errorf("%w: %s does not end in a newline", ErrMalformed, fmt.Sprintf(eventsPattern, b.chunks-1))
			}
		}
		h, err := b.tr.Next()
		if err == io.EOF {
			b.done = true
			break
		}
		if err != nil {
			return BundleEntry{}, fmt.Errorf("%w: reading the next events file: %v", ErrMalformed, err)
		}
		if b.backup && !strings.HasPrefix(h.Name, "events/") {
			b.done, b.after = true, h
			break
		}
		if want := fmt.Sprintf(eventsPattern, b.chunks); h.Name != want || h.Typeflag != tar.TypeReg {
			return BundleEntry{}, fmt.Errorf("%w: entry %q where %s belongs", ErrMalformed, h.Name, want)
		}
		b.chunks++
		if b.events == nil {
			b.events = bufio.NewReaderSize(b.tr, 64<<10)
		} else {
			b.events.Reset(b.tr)
		}
	}
	return BundleEntry{}, io.EOF
}

// readLine returns the next line of the current events file, newline
// included; lines longer than the read buffer are assembled up to maxLine.
func (b *BundleReader) readLine() ([]byte, error) {
	data, err := b.events.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return data, err
	}
	b.long = append(b.long[:0], data...)
	for errors.Is(err, bufio.ErrBufferFull) {
		if len(b.long) > maxLine {
			return nil, fmt.Errorf("%w: a line of %s is over %d bytes", ErrMalformed, fmt.Sprintf(eventsPattern, b.chunks-1), maxLine)
		}
		data, err = b.events.ReadSlice('\n')
		b.long = append(b.long, data...)
	}
	return b.long, err
}

func parseLine(data []byte) (BundleEntry, error) {
	var l line
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&l); err != nil {
		return BundleEntry{}, fmt.Errorf("%w: event line: %v", ErrMalformed, err)
	}
	if d.More() {
		return BundleEntry{}, fmt.Errorf("%w: event line: more than one JSON value", ErrMalformed)
	}
	if l.withheldWithContent() {
		return BundleEntry{}, fmt.Errorf("%w: event %d has both a leaf_hash and content", ErrMalformed, l.Index)
	}
	return l.entry(), nil
}
