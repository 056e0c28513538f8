package storage

import (
	"context"
	"fmt"
	"io"

	"github.com/jmoiron/sqlx"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tapd-mirror/tapd-mirror/integrity"
)

// BundleRequest says what WriteBundle writes.
type BundleRequest struct {
	Checkpoint SignedCheckpoint // the log state the bundle proves
	Key        string           // the verifier key the checkpoint is signed with
	// Filter, when set, makes a filtered bundle: the events of the live
	// records it matches, each with its inclusion proof. Nil: every event.
	Filter   *Filter
	Describe string // the filter, for people (bundle.json)
}

// WriteBundle writes a bundle (integrity/SPEC.md §4) to w and returns how
// many events it holds. Events are read in chunks, or streamed, on the
// export pool; memory stays flat whatever the log's size. Events whose
// content was purged are written withheld (leaf hash only).
func (s *Store) WriteBundle(ctx context.Context, w io.Writer, req BundleRequest) (int64, error) {
	bw, err := integrity.NewBundleWriter(w, req.Checkpoint.Signed, req.Key, integrity.BundleOptions{
		Filtered: req.Filter != nil, Filter: req.Describe,
		// The main pool: the export pool's connection may be busy streaming.
		Hashes: s.newHashReader(ctx, s.db),
	})
	if err != nil {
		return 0, err
	}
	var n int64
	add := func(e eventRow) error {
		n++
		if e.Body == nil {
			if req.Filter != nil {
				return fmt.Errorf("event %d of record %d: its content was purged; a filtered bundle cannot withhold it", e.Idx, e.RecordID)
			}
			return bw.AddWithheld(e.Idx, integrity.Kind(e.Kind), e.RecordID, e.leaf())
		}
		ev, err := integrity.DecodeEvent(e.Body)
		if err != nil {
			return fmt.Errorf("event %d: %w (run tapd-mirror verify --database)", e.Idx, err)
		}
		return bw.Add(e.Idx, ev)
	}
	size := req.Checkpoint.Size
	if req.Filter == nil {
		for lo := int64(0); lo < size; lo += verifyChunk {
			if err := s.eachEvent(ctx, s.exports, `e.idx >= ? AND e.idx < ?`, []any{lo, min(lo+verifyChunk, size)}, add); err != nil {
				return n, fmt.Errorf("reading events from %d: %w", lo, err)
			}
		}
	} else {
		where, args := s.where(*req.Filter)
		// A record's events: those with stored content (indexed by record),
		// and the one its row holds (log_idx).
		// One IN over a UNION of the two index paths: an OR of the two would
		// scan the whole log on PostgreSQL.
		cond := `e.idx IN (SELECT x.idx FROM integrity_event AS x WHERE x.body IS NOT NULL AND x.record_id IN (SELECT id FROM activity_log` + where + `)
			UNION SELECT log_idx FROM activity_log` + where + `) AND e.idx < ?`
		if err := s.eachEvent(ctx, s.exports, cond, append(append(args, args...), size), add); err != nil {
			return n, fmt.Errorf("reading the matching records' events: %w", err)
		}
	}
	if err := bw.Close(); err != nil {
		return n, err
	}
	return n, nil
}

// Proof is the inclusion proof of one event in a tree.
type Proof struct {
	Index    int64
	Kind     string
	Encoding []byte // the canonical encoding; nil when purged
	Leaf     tlog.Hash
	Path     tlog.RecordProof // RFC 6962 audit path, bottom-up
}

// RecordProofs proves the events of record id that are in the tree of the
// given size (≤ the log's size). ErrNotFound when the record has none.
func (s *Store) RecordProofs(ctx context.Context, id, size int64) ([]Proof, error) {
	var events []eventRow
	if err := s.eachEvent(ctx, s.db, `((e.body IS NOT NULL AND e.record_id = ?) OR e.idx = (SELECT log_idx FROM activity_log WHERE id = ?))
		AND e.idx < ?`, []any{id, id, size}, func(e eventRow) error {
		events = append(events, e)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading the events of record %d: %w", id, err)
	}
	if len(events) == 0 {
		return nil, ErrNotFound
	}
	hr := s.newHashReader(ctx, s.db)
	out := make([]Proof, len(events))
	for i, e := range events {
		p, err := integrity.InclusionProof(size, e.Idx, hr)
		if err != nil {
			return nil, err
		}
		out[i] = Proof{Index: e.Idx, Kind: e.Kind, Encoding: e.Body, Leaf: e.leaf(), Path: p}
	}
	return out, nil
}

// Consistency proves that the tree of size to extends the tree of size from
// and returns the proof with both roots.
func (s *Store) Consistency(ctx context.Context, from, to int64) (proof tlog.TreeProof, fromRoot, toRoot tlog.Hash, err error) {
	hr := s.newHashReader(ctx, s.db)
	if fromRoot, err = integrity.TreeHash(from, hr); err != nil {
		return nil, fromRoot, toRoot, err
	}
	if toRoot, err = integrity.TreeHash(to, hr); err != nil {
		return nil, fromRoot, toRoot, err
	}
	proof, err = integrity.ConsistencyProof(to, from, hr)
	return proof, fromRoot, toRoot, err
}

// LoggedEvent is one event of the log as stored.
type LoggedEvent struct {
	Index    int64
	Kind     integrity.Kind
	RecordID int64
	Event    *integrity.Event // nil when its content was purged
	Leaf     tlog.Hash
}

// ReadEvents returns events [from, to) of the log, in order.
// Recent events may come from memory (KeepRecentEvents), shared with other
// readers: callers must not change them.
func (s *Store) ReadEvents(ctx context.Context, from, to int64) ([]LoggedEvent, error) {
	if s.tail.kept() {
		// The head tells whether a withholding (another process's too)
		// made what the tail holds stale.
		h, err := s.Head(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading events %d to %d: %w", from, to-1, err)
		}
		if recent, ok := s.tail.read(h.withheld, from, to); ok {
			return recent, nil
		}
	}
	var rows []eventRow
	if err := s.eachEventContent(ctx, s.db, `e.idx >= ? AND e.idx < ?`, []any{from, to}, false, func(e eventRow) error {
		rows = append(rows, e)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading events %d to %d: %w", from, to-1, err)
	}
	out := make([]LoggedEvent, len(rows))
	for i, r := range rows {
		out[i] = LoggedEvent{Index: r.Idx, Kind: integrity.Kind(r.Kind), RecordID: r.RecordID, Leaf: r.leaf()}
		if r.event != nil { // read from its live row: nothing to decode
			out[i].Event = r.event
			continue
		}
		if r.Body != nil {
			ev, err := integrity.DecodeEvent(r.Body)
			if err != nil {
				return nil, fmt.Errorf("event %d: %w", r.Idx, err)
			}
			out[i].Event = &ev
		}
	}
	return out, nil
}

// TreeRoot is the root of the log's tree of the given size (≤ the log's size).
func (s *Store) TreeRoot(ctx context.Context, size int64) (tlog.Hash, error) {
	return integrity.TreeHash(size, s.newHashReader(ctx, s.db))
}

// eventsWithContent reads events beside the live row of each record event
// whose content is that row (body NULL while the row is the version it
// logged), in one statement: one snapshot.
const eventsWithContent = `SELECT e.idx, e.kind, e.record_id, e.body, e.leaf_hash, e.body IS NULL,
	a.id, COALESCE(a.platform, ''), COALESCE(a.serial, ''), COALESCE(a.action_type, ''), COALESCE(a.action_detail, ''),
	COALESCE(a.username, ''), a.timestamp, COALESCE(a.source, ''), a.source_id, COALESCE(a.workspace_id, ''),
	COALESCE(a.extra, '{}'), a.ingested_at
	FROM integrity_event AS e
	LEFT JOIN activity_log AS a ON e.body IS NULL AND e.kind = 'record' AND a.id = e.record_id AND a.log_idx = e.idx`

// eachEvent calls fn with the events cond selects (conditions on e, the
// event), in index order, each with its content: stored, or encoded from
// its live row. Body is nil only for content a purge withheld. A record
// event whose row is gone though no delete or purge event removed it is an
// error that names it: the row was removed behind the service's back.
func (s *Store) eachEvent(ctx context.Context, q sqlx.QueryerContext, cond string, args []any, fn func(eventRow) error) error {
	return s.eachEventContent(ctx, q, cond, args, true, fn)
}

// eachEventContent is eachEvent; without encode, an event whose content is
// its live row comes with event set and Body nil (readers that only need
// the event, such as forwarding, skip encoding it).
func (s *Store) eachEventContent(ctx context.Context, q sqlx.QueryerContext, cond string, args []any, encode bool, fn func(eventRow) error) error {
	rows, err := q.QueryxContext(ctx, s.rebind(eventsWithContent+` WHERE `+cond+` ORDER BY e.idx`), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		e     eventRow
		r     activityRow
		rowID *int64
	)
	dst := []any{&e.Idx, &e.Kind, &e.RecordID, &e.Body, &e.Leaf, &e.InRow, &rowID, &r.Platform, &r.Serial, &r.ActionType,
		&r.ActionDetail, &r.Username, &r.Timestamp, &r.Source, &r.SourceID, &r.WorkspaceID, &r.Extra, &r.IngestedAt}
	for rows.Next() {
		rowID, r.SourceID, e.event = nil, nil, nil
		if err := rows.Scan(dst...); err != nil {
			return err
		}
		switch {
		case !e.InRow:
			if len(e.Body) == 0 {
				e.Body = nil // withheld
			}
		case rowID == nil:
			return fmt.Errorf("event %d (%s of record %d): its content is neither stored nor in the table (no row points at it), and no "+
				"delete or purge event removed the record: it was removed or changed behind the service's back (run tapd-mirror verify --database)", e.Idx, e.Kind, e.RecordID)
		default:
			r.ID = *rowID
			// A row changed behind the service's back encodes to content
			// that does not hash to the leaf: verifiers name the event.
			ev := integrity.RecordEvent(toRecord(r.activity()))
			e.Body = nil
			if encode {
				if e.Body, err = integrity.EncodeEvent(ev); err != nil {
					return fmt.Errorf("event %d: record %d: %w (run tapd-mirror verify --database)", e.Idx, e.RecordID, err)
				}
			}
			e.event = &ev
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}
