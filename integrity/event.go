// Package integrity is the tamper-evident log of every change to the
// activity archive: a canonical encoding of events, an RFC 6962 Merkle tree
// over their hashes (golang.org/x/mod/sumdb/tlog), signed checkpoints
// (…/sumdb/note), bundles, and offline verification of bundles.
//
// It has no database import. Storage appends to the log inside the
// transaction that makes the change and keeps the hashes in its own tables,
// reading them back through a tlog.HashReader; `tapd-mirror verify` runs the
// verification with nothing but a bundle and a public key. The byte formats
// are specified in SPEC.md beside this file.
package integrity

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/tlog"
)

// Kind names what an event did to the archive.
type Kind string

// The kinds of events.
const (
	KindRecord  Kind = "record"  // a new record was stored
	KindUpdate  Kind = "update"  // a mirrored record changed at TAPD: its new version
	KindDelete  Kind = "delete"  // a record was deleted on request
	KindPurge   Kind = "purge"   // a record was removed by a retention policy
	KindHold    Kind = "hold"    // a legal hold was placed
	KindRelease Kind = "release" // a legal hold was lifted
	KindAccess  Kind = "access"  // someone read, exported or changed the archive: an access trail entry
)

// encodingTag opens every encoded event; a new encoding gets a new tag.
const encodingTag = "tapd-mirror/event/v1"

// Record is an activity record as stored: every column of activity_log.
// Times are kept to the second (the encoding holds Unix seconds).
type Record struct {
	ID           int64
	Platform     string
	Serial       string
	ActionType   string
	ActionDetail string
	Username     string
	Timestamp    time.Time
	Source       string
	SourceID     string // "" when the record has none (NULL)
	WorkspaceID  string
	Extra        map[string]string // the raw TAPD fields; nil and empty are the same
	IngestedAt   time.Time
}

// Hold is a legal hold: records matching Filter must not be purged.
type Hold struct {
	ID     int64
	Name   string
	Reason string
	Filter string // the hold's filter as the API stored it (opaque text)
}

// Access is one entry of the access trail: who did what, from where, with
// what outcome. Its time is the event's Time.
type Access struct {
	ID           int64 // the entry's id in access_log
	Principal    string
	SourceIP     string
	ForwardedFor string
	Action       string
	Params       map[string]string // nil and empty are the same
	Rows         int64             // rows returned or affected
	Outcome      string
}

// Event is one change to the archive, the content of one leaf of the log.
// Which fields an event carries depends on its Kind (see SPEC.md); the others
// must be zero, so that nothing set on an event is silently left unlogged.
type Event struct {
	Kind Kind
	// Record is the record (KindRecord) or its new version (KindUpdate).
	Record *Record
	// Prev is the index of an earlier event: for KindUpdate the event holding
	// the version replaced, for KindDelete and KindPurge the record's latest
	// record or update event.
	Prev int64
	// RecordID is the record removed (KindDelete, KindPurge).
	RecordID int64
	// Token names the API token that asked (KindDelete, KindHold, KindRelease).
	Token string
	// Policy names the retention policy (KindPurge).
	Policy string
	// Hold is the hold placed or lifted (KindHold, KindRelease).
	Hold *Hold
	// Access is the access trail entry (KindAccess).
	Access *Access
	// Time is when it happened (all kinds but KindRecord and KindUpdate, whose
	// time is Record.IngestedAt).
	Time time.Time
}

// RecordEvent is the event for a new record.
func RecordEvent(r Record) Event { return Event{Kind: KindRecord, Record: &r} }

// UpdateEvent is the event for a new version of a record whose previous
// version is held by event prev.
func UpdateEvent(prev int64, r Record) Event { return Event{Kind: KindUpdate, Prev: prev, Record: &r} }

// DeleteEvent is the event for deleting record id, whose latest version is
// held by event prev, at the request of token.
func DeleteEvent(id, prev int64, token string, at time.Time) Event {
	return Event{Kind: KindDelete, RecordID: id, Prev: prev, Token: token, Time: at}
}

// PurgeEvent is the event for removing record id (latest version in event
// prev) under a retention policy.
func PurgeEvent(id, prev int64, policy string, at time.Time) Event {
	return Event{Kind: KindPurge, RecordID: id, Prev: prev, Policy: policy, Time: at}
}

// HoldEvent is the event for placing a legal hold.
func HoldEvent(h Hold, token string, at time.Time) Event {
	return Event{Kind: KindHold, Hold: &h, Token: token, Time: at}
}

// ReleaseEvent is the event for lifting a legal hold.
func ReleaseEvent(h Hold, token string, at time.Time) Event {
	return Event{Kind: KindRelease, Hold: &h, Token: token, Time: at}
}

// AccessEvent is the event for an access trail entry made at.
func AccessEvent(a Access, at time.Time) Event { return Event{Kind: KindAccess, Access: &a, Time: at} }

// Subject is the id of the record the event is about, or 0 for holds and
// access entries:
// the record_id column of the event table.
func (e Event) Subject() int64 {
	switch e.Kind {
	case KindRecord, KindUpdate:
		if e.Record != nil {
			return e.Record.ID
		}
	case KindDelete, KindPurge:
		return e.RecordID
	}
	return 0
}

// When is the event's time: when the record was ingested for records and
// updates, Time otherwise.
func (e Event) When() time.Time {
	if (e.Kind == KindRecord || e.Kind == KindUpdate) && e.Record != nil {
		return e.Record.IngestedAt
	}
	return e.Time
}

// LeafHash is the hash of an encoded event as a leaf of the log (RFC 6962:
// SHA-256 of 0x00 and the encoding). It outlives the content: a purged
// event's leaf hash stays in the tree.
func LeafHash(encoded []byte) tlog.Hash { return tlog.RecordHash(encoded) }

// EncodeEvent returns the canonical encoding of e (SPEC.md), the bytes whose
// LeafHash enters the log. It fails on an unknown kind, a missing or stray
// field, a zero time, a non-positive id, a negative event index or text that
// is not valid UTF-8.
func EncodeEvent(e Event) ([]byte, error) {
	return AppendEncoding(make([]byte, 0, 512), e) // a typical record event is 300–500 bytes
}

// AppendLeaf appends 0x00 and the canonical encoding of e to scratch and
// returns the grown buffer, the encoding within it (valid until scratch is
// reused) and its leaf hash: EncodeEvent and LeafHash without allocating,
// for ingest, which hashes every record.
func AppendLeaf(scratch []byte, e Event) (buf, encoded []byte, leaf tlog.Hash, err error) {
	start := len(scratch)
	buf, err = AppendEncoding(append(scratch, 0), e)
	if err != nil {
		return scratch, nil, leaf, err
	}
	return buf, buf[start+1:], sha256.Sum256(buf[start:]), nil
}

// AppendEncoding appends the canonical encoding of e to dst (EncodeEvent).
func AppendEncoding(dst []byte, e Event) ([]byte, error) {
	enc := encoder{b: dst}
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("encoding %s event: %w", e.Kind, err)
	}
	enc.str(encodingTag)
	enc.str(string(e.Kind))
	switch e.Kind {
	case KindRecord:
		enc.record(e.Record)
	case KindUpdate:
		enc.i64(e.Prev)
		enc.record(e.Record)
	case KindDelete:
		enc.i64(e.RecordID)
		enc.i64(e.Prev)
		enc.str(e.Token)
		enc.time(e.Time)
	case KindPurge:
		enc.i64(e.RecordID)
		enc.i64(e.Prev)
		enc.str(e.Policy)
		enc.time(e.Time)
	case KindHold, KindRelease:
		enc.i64(e.Hold.ID)
		enc.str(e.Hold.Name)
		enc.str(e.Hold.Reason)
		enc.str(e.Hold.Filter)
		enc.str(e.Token)
		enc.time(e.Time)
	case KindAccess:
		a := e.Access
		enc.i64(a.ID)
		enc.str(a.Principal)
		enc.str(a.SourceIP)
		enc.str(a.ForwardedFor)
		enc.str(a.Action)
		enc.strMap(a.Params)
		enc.i64(a.Rows)
		enc.str(a.Outcome)
		enc.time(e.Time)
	}
	if enc.err != nil {
		return nil, fmt.Errorf("encoding %s event: %w", e.Kind, enc.err)
	}
	return enc.b, nil
}

// check reports the first field that is missing, stray or out of range for
// e's kind; UTF-8 is checked while encoding.
func (e Event) check() error {
	// Which optional fields each kind carries.
	var rec, prev, id, token, policy, hold, access, at bool
	switch e.Kind {
	case KindRecord:
		rec = true
	case KindUpdate:
		rec, prev = true, true
	case KindDelete:
		id, prev, token, at = true, true, true, true
	case KindPurge:
		id, prev, policy, at = true, true, true, true
	case KindHold, KindRelease:
		hold, token, at = true, true, true
	case KindAccess:
		access, at = true, true
	default:
		return fmt.Errorf("unknown event kind %q", e.Kind)
	}
	switch {
	case rec != (e.Record != nil):
		return stray("record", rec)
	case hold != (e.Hold != nil):
		return stray("hold", hold)
	case access != (e.Access != nil):
		return stray("access", access)
	case !prev && e.Prev != 0:
		return stray("prev", false)
	case !id && e.RecordID != 0:
		return stray("record_id", false)
	case !token && e.Token != "":
		return stray("token", false)
	case !policy && e.Policy != "":
		return stray("policy", false)
	case !at && !e.Time.IsZero():
		return stray("time", false)
	case at && e.Time.IsZero():
		return errors.New("time is not set")
	case prev && e.Prev < 0:
		return fmt.Errorf("prev %d is not an event index", e.Prev)
	case id && e.RecordID <= 0:
		return fmt.Errorf("record_id %d is not a record id", e.RecordID)
	}
	if rec {
		switch {
		case e.Record.ID <= 0:
			return fmt.Errorf("record id %d is not a record id", e.Record.ID)
		case e.Record.Timestamp.IsZero():
			return errors.New("record timestamp is not set")
		case e.Record.IngestedAt.IsZero():
			return errors.New("record ingested_at is not set")
		}
	}
	if hold && e.Hold.ID <= 0 {
		return fmt.Errorf("hold id %d is not a hold id", e.Hold.ID)
	}
	if access && e.Access.ID <= 0 {
		return fmt.Errorf("access id %d is not an access entry id", e.Access.ID)
	}
	return nil
}

func stray(field string, want bool) error {
	if want {
		return fmt.Errorf("%s is missing", field)
	}
	return fmt.Errorf("%s does not belong to this kind", field)
}

// encoder appends the primitive types of SPEC.md, remembering the first error.
type encoder struct {
	b   []byte
	err error
}

func (c *encoder) i64(v int64) { c.b = binary.BigEndian.AppendUint64(c.b, uint64(v)) }

func (c *encoder) time(t time.Time) { c.i64(t.Unix()) }

func (c *encoder) str(s string) {
	switch {
	case c.err != nil:
	case !utf8.ValidString(s):
		c.err = fmt.Errorf("text %q is not valid UTF-8", s)
	case len(s) > math.MaxUint32:
		c.err = fmt.Errorf("text of %d bytes is too long", len(s))
	}
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(s)))
	c.b = append(c.b, s...)
}

func (c *encoder) record(r *Record) {
	c.i64(r.ID)
	c.str(r.Platform)
	c.str(r.Serial)
	c.str(r.ActionType)
	c.str(r.ActionDetail)
	c.str(r.Username)
	c.time(r.Timestamp)
	c.str(r.Source)
	c.str(r.SourceID)
	c.str(r.WorkspaceID)
	c.strMap(r.Extra)
	c.time(r.IngestedAt)
}

// strMap writes a map sorted by key bytes, so that map order never reaches
// the hash.
func (c *encoder) strMap(m map[string]string) {
	var fixed [32]string // TAPD sends about a dozen fields: no allocation
	keys := fixed[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(keys)))
	for _, k := range keys {
		c.str(k)
		c.str(m[k])
	}
}

// DecodeEvent parses an event's canonical encoding, as stored beside its
// leaf hash, back into an Event (to write it into a bundle, or to compare
// it with the live table). Only canonical bytes are accepted: re-encoding
// the result gives exactly enc.
func DecodeEvent(enc []byte) (Event, error) {
	d := decoder{b: enc}
	var e Event
	if tag := d.str(); tag != encodingTag && d.err == nil {
		return Event{}, fmt.Errorf("decoding event: tag %q, want %q", tag, encodingTag)
	}
	e.Kind = Kind(d.str())
	switch e.Kind {
	case KindRecord:
		e.Record = d.record()
	case KindUpdate:
		e.Prev = d.i64()
		e.Record = d.record()
	case KindDelete, KindPurge:
		e.RecordID = d.i64()
		e.Prev = d.i64()
		if e.Kind == KindDelete {
			e.Token = d.str()
		} else {
			e.Policy = d.str()
		}
		e.Time = d.time()
	case KindHold, KindRelease:
		e.Hold = &Hold{ID: d.i64(), Name: d.str(), Reason: d.str(), Filter: d.str()}
		e.Token = d.str()
		e.Time = d.time()
	case KindAccess:
		e.Access = &Access{ID: d.i64(), Principal: d.str(), SourceIP: d.str(), ForwardedFor: d.str(), Action: d.str(),
			Params: d.strMap(), Rows: d.i64(), Outcome: d.str()}
		e.Time = d.time()
	default:
		if d.err == nil {
			return Event{}, fmt.Errorf("decoding event: unknown kind %q", e.Kind)
		}
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d bytes after the last field", len(d.b))
	}
	if d.err != nil {
		return Event{}, fmt.Errorf("decoding %s event: %w", e.Kind, d.err)
	}
	again, err := EncodeEvent(e)
	if err != nil {
		return Event{}, fmt.Errorf("decoding event: %w", err)
	}
	if string(again) != string(enc) {
		return Event{}, fmt.Errorf("decoding %s event: not in canonical form (extra keys out of order or repeated)", e.Kind)
	}
	return e, nil
}

// decoder reads the primitive types of SPEC.md, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.err = fmt.Errorf("truncated: %d bytes left, %d wanted", len(d.b), n)
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}

func (d *decoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) i64() int64 {
	if b := d.take(8); b != nil {
		return int64(binary.BigEndian.Uint64(b))
	}
	return 0
}

func (d *decoder) str() string { return string(d.take(uint64(d.u32()))) }

func (d *decoder) time() time.Time {
	s := d.i64()
	if d.err != nil {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

func (d *decoder) record() *Record {
	r := &Record{ID: d.i64(), Platform: d.str(), Serial: d.str(), ActionType: d.str(), ActionDetail: d.str(),
		Username: d.str(), Timestamp: d.time(), Source: d.str(), SourceID: d.str(), WorkspaceID: d.str()}
	r.Extra = d.strMap()
	r.IngestedAt = d.time()
	return r
}

func (d *decoder) strMap() map[string]string {
	n := d.u32()
	m := make(map[string]string, min(n, 64))
	for range n {
		if d.err != nil {
			break
		}
		k := d.str()
		m[k] = d.str()
	}
	return m
}
