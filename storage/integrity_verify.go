package storage

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tapd-mirror/tapd-mirror/integrity"
)

// Kinds of problems VerifyDatabase finds.
const (
	ProblemChanged    = "changed"    // a live row differs from its latest event
	ProblemAdded      = "added"      // a live row the log does not account for
	ProblemRemoved    = "removed"    // a row the log says exists is gone
	ProblemEvent      = "event"      // an event row is missing or its content does not hash to its leaf
	ProblemHash       = "hash"       // a stored tree hash differs from what the leaves give
	ProblemHead       = "head"       // the log's head (size, root) differs from the events
	ProblemCheckpoint = "checkpoint" // a stored checkpoint is not signed by the key or not a prefix of the log
)

// Problem is one discrepancy, named.
type Problem struct {
	Kind     string `json:"kind"`
	RecordID int64  `json:"record_id,omitempty"`
	Event    *int64 `json:"event,omitempty"` // the event's index in the log
	Detail   string `json:"detail"`
}

// maxProblems bounds how many problems a report lists (it counts them all).
const maxProblems = 100

// VerifyReport is the outcome of VerifyDatabase.
type VerifyReport struct {
	OK          bool      `json:"ok"`
	Full        bool      `json:"full"` // the whole log and table; otherwise only events From..TreeSize
	From        int64     `json:"from"`
	TreeSize    int64     `json:"tree_size"`
	Records     int64     `json:"records"`     // live rows compared with the log
	Checkpoints int64     `json:"checkpoints"` // signed checkpoints checked
	Latest      int64     `json:"latest_checkpoint"`
	Problems    []Problem `json:"problems"`
	Count       int64     `json:"problem_count"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
}

func (r *VerifyReport) add(p Problem) {
	r.Count++
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, p)
	}
}

func at(i int64) *int64 { return &i }

// VerifyOptions configure VerifyDatabase.
type VerifyOptions struct {
	// Key is the verifier key checkpoints must be signed with ("": not checked).
	Key string
	// From > 0 checks only what happened since the log had From events: the
	// new events, their hashes, checkpoints past From, and the rows those
	// events touch. The first From events and their hashes are trusted.
	From int64
}

// verifyChunk is how many events, or record ids, one step reads.
const verifyChunk = 5000

// VerifyDatabase checks the live database against its integrity log: every
// event's content against its leaf hash, every stored tree hash against the
// leaves, the log's head, every stored checkpoint (signature, and that the
// log extends it), and every live row against the latest event of its record
// — so that a row changed, added or removed with plain SQL, behind the
// service's back, is found and named. It reads in chunks and holds little
// memory; writes may go on meanwhile.
func (s *Store) VerifyDatabase(ctx context.Context, o VerifyOptions) (VerifyReport, error) {
	rep := VerifyReport{Full: o.From == 0, From: o.From, Started: time.Now().UTC(), Problems: []Problem{}}
	head, err := s.Head(ctx)
	if err != nil {
		return rep, err
	}
	rep.TreeSize = head.Size
	if o.From > head.Size {
		rep.add(Problem{Kind: ProblemHead, Detail: fmt.Sprintf("the log has %d events, fewer than the %d already verified: it was truncated", head.Size, o.From)})
		o.From, rep.From, rep.Full = 0, 0, true
	}
	if err := s.verifyLog(ctx, o, head, &rep); err != nil {
		return rep, err
	}
	if err := s.verifyRows(ctx, o.From, head.Size, &rep); err != nil {
		return rep, err
	}
	rep.OK = rep.Count == 0
	rep.Finished = time.Now().UTC()
	return rep, nil
}

type eventRow struct {
	Idx      int64  `db:"idx"`
	Kind     string `db:"kind"`
	RecordID int64  `db:"record_id"`
	Body     []byte `db:"body"`
	Leaf     []byte `db:"leaf_hash"`
	// InRow: body is NULL, a record event whose content is its live row.
	// (An empty body is content withheld by a purge.)
	InRow bool `db:"in_row"`
	// event is the content eachEvent encoded Body from (InRow), so that
	// readers need not decode it again.
	event *integrity.Event
}

func (e eventRow) leaf() tlog.Hash {
	var h tlog.Hash
	copy(h[:], e.Leaf)
	return h
}

const eventColumns = `idx, kind, record_id, body, leaf_hash, body IS NULL AS in_row`

// verifyLog checks events [o.From, head.Size), their stored hashes, the head
// and the checkpoints in that range.
func (s *Store) verifyLog(ctx context.Context, o VerifyOptions, head LogHead, rep *VerifyReport) error {
	f, err := integrity.NewFrontier(o.From, s.newHashReader(ctx, s.db))
	if err != nil {
		rep.add(Problem{Kind: ProblemHash, Detail: fmt.Sprintf("the stored hashes of the first %d events cannot be read: %v", o.From, err)})
		return nil
	}
	var cps []checkpointRow
	if err := s.db.SelectContext(ctx, &cps, s.rebind(`SELECT `+checkpointColumns+` FROM integrity_checkpoint
		WHERE tree_size > ? ORDER BY tree_size`), o.From); err != nil {
		return fmt.Errorf("reading checkpoints: %w", err)
	}
	checkAt := func() { // every checkpoint of the size reached so far
		for len(cps) > 0 && cps[0].Size <= f.Size() {
			c := cps[0].checkpoint()
			cps = cps[1:]
			if c.Size > head.Size {
				break // signed after the head was read: the next run checks it
			}
			rep.Checkpoints++
			rep.Latest = c.Size
			s.checkCheckpoint(c, f, o.Key, rep)
		}
	}
	checkAt()
	var ac accessCheck
	for lo := o.From; lo < head.Size; lo += verifyChunk {
		hi := min(lo+verifyChunk, head.Size)
		var events []eventRow
		if err := s.db.SelectContext(ctx, &events, s.rebind(`SELECT `+eventColumns+` FROM integrity_event
			WHERE idx >= ? AND idx < ? ORDER BY idx`), lo, hi); err != nil {
			return fmt.Errorf("reading events %d to %d: %w", lo, hi-1, err)
		}
		stored, err := s.storedHashes(ctx, tlog.StoredHashIndex(0, lo), tlog.StoredHashIndex(0, hi), rep)
		if err != nil {
			return err
		}
		next := lo
		for _, e := range events {
			for ; next < e.Idx; next++ {
				rep.add(Problem{Kind: ProblemEvent, Event: at(next), Detail: fmt.Sprintf("event %d is missing from integrity_event", next)})
			}
			next = e.Idx + 1
			checkEventRow(e, rep)
			if f.Size() != e.Idx {
				continue // the tree cannot be grown past a missing event
			}
			hs, err := f.Append(e.leaf())
			if err != nil {
				return err
			}
			for _, h := range hs {
				got, ok := stored[h.Index]
				switch {
				case !ok:
					rep.add(Problem{Kind: ProblemHash, Event: at(e.Idx), Detail: fmt.Sprintf("tree hash %d (of event %d) is missing from integrity_hash", h.Index, e.Idx)})
				case got != h.Hash:
					rep.add(Problem{Kind: ProblemHash, Event: at(e.Idx), Detail: fmt.Sprintf("tree hash %d (of event %d) differs from what the leaves give: integrity_hash was altered, or leaves were swapped", h.Index, e.Idx)})
				}
			}
			checkAt()
		}
		for ; next < hi; next++ {
			rep.add(Problem{Kind: ProblemEvent, Event: at(next), Detail: fmt.Sprintf("event %d is missing from integrity_event", next)})
		}
		if err := s.checkHeldRows(ctx, events, rep); err != nil {
			return err
		}
		if err := s.checkAccessEvents(ctx, events, &ac, rep); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if err := s.finishAccess(ctx, &ac, o.From == 0, rep); err != nil {
		return err
	}
	if f.Size() == head.Size {
		if root, err := f.Root(); err != nil || root != head.Root {
			rep.add(Problem{Kind: ProblemHead, Detail: fmt.Sprintf("the %d events hash to %s, the log's head says %s", head.Size, root, head.Root)})
		}
		if edge, err := edgeOf(f); err != nil || !bytes.Equal(edge, head.edge) {
			rep.add(Problem{Kind: ProblemHead, Detail: "the log's stored edge (integrity_state.edge) differs from what the events give: the next appends would store wrong hashes"})
		}
	}
	return nil
}

// checkCheckpoint checks a stored checkpoint against the tree of its size (f).
func (s *Store) checkCheckpoint(c SignedCheckpoint, f *integrity.Frontier, key string, rep *VerifyReport) {
	name := fmt.Sprintf("checkpoint of size %d (signed %s)", c.Size, c.SignedAt.Format(time.RFC3339))
	if key != "" {
		cp, err := integrity.OpenCheckpoint(c.Signed, key)
		if err != nil {
			rep.add(Problem{Kind: ProblemCheckpoint, Detail: fmt.Sprintf("%s: %v", name, err)})
			return
		}
		if cp.Size != c.Size || cp.Root != c.Root {
			rep.add(Problem{Kind: ProblemCheckpoint, Detail: fmt.Sprintf("%s: the signed text says size %d root %s, the table says root %s", name, cp.Size, cp.Root, c.Root)})
			return
		}
	}
	if root, err := f.Root(); err != nil || root != c.Root {
		rep.add(Problem{Kind: ProblemCheckpoint, Detail: fmt.Sprintf("%s is not a prefix of the log: its first %d events hash to %s, it signed %s", name, c.Size, root, c.Root)})
	}
}

// checkEventRow checks that an event's content hashes to its leaf and that
// its kind and record_id columns say what the content says.
func checkEventRow(e eventRow, rep *VerifyReport) {
	if len(e.Leaf) != tlog.HashSize {
		rep.add(Problem{Kind: ProblemEvent, Event: at(e.Idx), RecordID: e.RecordID, Detail: fmt.Sprintf("event %d has a leaf hash of %d bytes", e.Idx, len(e.Leaf))})
		return
	}
	if e.InRow {
		if e.Kind != string(integrity.KindRecord) {
			rep.add(Problem{Kind: ProblemEvent, Event: at(e.Idx), RecordID: e.RecordID, Detail: fmt.Sprintf("event %d (%s of record %d) has no content: it was removed behind the service's back", e.Idx, e.Kind, e.RecordID)})
		}
		return // a record event whose row holds its content: checkHeldRows and verifyRows compare them
	}
	if len(e.Body) == 0 {
		return // withheld by a purge: only the leaf hash is left
	}
	if integrity.LeafHash(e.Body) != e.leaf() {
		rep.add(Problem{Kind: ProblemEvent, Event: at(e.Idx), RecordID: e.RecordID, Detail: fmt.Sprintf("event %d (%s of record %d): its content does not hash to its leaf hash: one of them was altered", e.Idx, e.Kind, e.RecordID)})
		return
	}
	ev, err := integrity.DecodeEvent(e.Body)
	if err != nil {
		rep.add(Problem{Kind: ProblemEvent, Event: at(e.Idx), RecordID: e.RecordID, Detail: fmt.Sprintf("event %d: %v", e.Idx, err)})
		return
	}
	if string(ev.Kind) != e.Kind || ev.Subject() != e.RecordID {
		rep.add(Problem{Kind: ProblemEvent, Event: at(e.Idx), RecordID: e.RecordID, Detail: fmt.Sprintf("event %d: its columns say %s of record %d, its content %s of record %d", e.Idx, e.Kind, e.RecordID, ev.Kind, ev.Subject())})
	}
}

// checkHeldRows checks that each record event among events whose content
// its row holds (body NULL) still has that row, pointing back at it: the
// only trace of a row deleted by SQL whose record never changed. Events and
// rows are read again in one statement (one snapshot): writes go on.
func (s *Store) checkHeldRows(ctx context.Context, events []eventRow, rep *VerifyReport) error {
	var idx []int64
	for _, e := range events {
		if e.InRow && e.Kind == string(integrity.KindRecord) {
			idx = append(idx, e.Idx)
		}
	}
	if len(idx) == 0 {
		return nil
	}
	q, args, err := s.int64In(`SELECT e.idx, e.record_id, a.id AS row_id, a.log_idx FROM integrity_event AS e
		LEFT JOIN activity_log AS a ON a.id = e.record_id
		WHERE e.body IS NULL AND e.kind = 'record' AND e.idx`, idx)
	if err != nil {
		return err
	}
	var held []struct {
		Idx      int64  `db:"idx"`
		RecordID int64  `db:"record_id"`
		RowID    *int64 `db:"row_id"`
		LogIdx   *int64 `db:"log_idx"`
	}
	if err := s.db.SelectContext(ctx, &held, q, args...); err != nil {
		return fmt.Errorf("reading the rows that hold events: %w", err)
	}
	for _, h := range held {
		switch {
		case h.RowID == nil:
			rep.add(Problem{Kind: ProblemRemoved, RecordID: h.RecordID, Event: at(h.Idx), Detail: fmt.Sprintf("record %d is missing from the table, but its record event %d says it exists (and the row held its only copy): it was removed behind the service's back", h.RecordID, h.Idx)})
		case h.LogIdx == nil || *h.LogIdx != h.Idx:
			rep.add(Problem{Kind: ProblemChanged, RecordID: h.RecordID, Event: at(h.Idx), Detail: fmt.Sprintf("record %d no longer points at its record event %d (log_idx): it was changed behind the service's back", h.RecordID, h.Idx)})
		}
	}
	return nil
}

// storedHashes reads the stored hashes [lo, hi) from integrity_hash's runs.
// Runs that overlap are reported (a hash stored twice may hide a rewrite).
func (s *Store) storedHashes(ctx context.Context, lo, hi int64, rep *VerifyReport) (map[int64]tlog.Hash, error) {
	rows, err := s.db.QueryxContext(ctx, s.rebind(`SELECT idx, hashes FROM integrity_hash
		WHERE idx < ? AND idx >= COALESCE((SELECT MAX(idx) FROM integrity_hash WHERE idx <= ?), 0) ORDER BY idx`), hi, lo)
	if err != nil {
		return nil, fmt.Errorf("reading tree hashes %d to %d: %w", lo, hi-1, err)
	}
	defer rows.Close()
	out := make(map[int64]tlog.Hash, hi-lo)
	end := int64(-1)
	for rows.Next() {
		var r hashRun
		if err := rows.Scan(&r.start, &r.hashes); err != nil {
			return nil, err
		}
		if len(r.hashes)%tlog.HashSize != 0 || r.start < end {
			rep.add(Problem{Kind: ProblemHash, Detail: fmt.Sprintf("the run of tree hashes stored at %d is malformed or overlaps the one before it: integrity_hash was altered", r.start)})
		}
		n := int64(len(r.hashes) / tlog.HashSize)
		for x := max(r.start, lo); x < min(r.start+n, hi); x++ {
			out[x] = r.at(x)
		}
		end = r.start + n
	}
	return out, rows.Err()
}

// verifyRows compares live rows with the latest event of their record: all
// records (from == 0), or those the events [from, size) touched.
func (s *Store) verifyRows(ctx context.Context, from, size int64, rep *VerifyReport) error {
	if from == 0 {
		var maxID int64
		if err := s.db.GetContext(ctx, &maxID, `SELECT MAX(m) FROM (SELECT COALESCE(MAX(id), 0) AS m FROM activity_log
			UNION ALL SELECT COALESCE(MAX(record_id), 0) FROM integrity_event WHERE body IS NOT NULL) AS ids`); err != nil {
			return fmt.Errorf("reading the largest record id: %w", err)
		}
		for lo := int64(1); lo <= maxID; lo += verifyChunk {
			if err := s.compareRecords(ctx, `id >= ? AND id < ?`, `record_id >= ? AND record_id < ?`, []any{lo, lo + verifyChunk}, rep); err != nil {
				return err
			}
		}
		return nil
	}
	for lo := from; lo < size; lo += verifyChunk {
		var ids []int64
		if err := s.db.SelectContext(ctx, &ids, s.rebind(`SELECT DISTINCT record_id FROM integrity_event
			WHERE idx >= ? AND idx < ? AND record_id > 0`), lo, min(lo+verifyChunk, size)); err != nil {
			return fmt.Errorf("reading the records events touched: %w", err)
		}
		if len(ids) == 0 {
			continue
		}
		rowsCond, args, err := s.int64In(`id`, ids)
		if err != nil {
			return err
		}
		eventsCond, _, _ := s.int64In(`record_id`, ids)
		if err := s.compareRecords(ctx, rowsCond, eventsCond, args, rep); err != nil {
			return err
		}
	}
	return nil
}

// compareRecords compares the rows matching rowsCond with the events
// matching eventsCond (the same records), read in one snapshot.
func (s *Store) compareRecords(ctx context.Context, rowsCond, eventsCond string, args []any, rep *VerifyReport) error {
	rows := map[int64]Activity{}
	latest := map[int64]eventRow{}
	var order []int64
	err := s.readTx(ctx, s.db, func(tx *sqlx.Tx) error {
		if err := eachActivity(ctx, tx, s.rebind(`SELECT `+loggedActivityColumns+` FROM activity_log WHERE `+rowsCond), args, func(a Activity) error {
			rows[a.ID] = a
			return nil
		}); err != nil {
			return fmt.Errorf("reading records: %w", err)
		}
		var events []eventRow
		// Events with stored content, found by record; and the event each
		// row holds itself (log_idx), which only the row points at.
		if err := tx.SelectContext(ctx, &events, s.rebind(`SELECT `+eventColumns+` FROM integrity_event
			WHERE body IS NOT NULL AND `+eventsCond), args...); err != nil {
			return fmt.Errorf("reading records' events: %w", err)
		}
		var held []int64
		for _, a := range rows {
			if a.logIdx != nil {
				held = append(held, *a.logIdx)
			}
		}
		if len(held) > 0 {
			q, hargs, err := s.int64In(`SELECT `+eventColumns+` FROM integrity_event WHERE idx`, held)
			if err != nil {
				return err
			}
			var more []eventRow
			if err := tx.SelectContext(ctx, &more, q, hargs...); err != nil {
				return fmt.Errorf("reading the events rows hold: %w", err)
			}
			events = append(events, more...)
		}
		slices.SortFunc(events, func(a, b eventRow) int {
			return cmp.Or(cmp.Compare(a.RecordID, b.RecordID), cmp.Compare(a.Idx, b.Idx))
		})
		for _, e := range events {
			if e.RecordID <= 0 {
				continue
			}
			if _, seen := latest[e.RecordID]; !seen {
				order = append(order, e.RecordID)
			}
			latest[e.RecordID] = e // ordered by idx: the last one stays
		}
		return nil
	})
	if err != nil {
		return err
	}
	rep.Records += int64(len(rows))
	for _, id := range order {
		e := latest[id]
		a, live := rows[id]
		delete(rows, id)
		gone := e.Kind == string(integrity.KindDelete) || e.Kind == string(integrity.KindPurge)
		switch {
		case live && gone:
			rep.add(Problem{Kind: ProblemAdded, RecordID: id, Event: at(e.Idx), Detail: fmt.Sprintf("record %d is in the table, but event %d %sd it: it was put back behind the service's back", id, e.Idx, e.Kind)})
		case !live && !gone:
			rep.add(Problem{Kind: ProblemRemoved, RecordID: id, Event: at(e.Idx), Detail: fmt.Sprintf("record %d is missing from the table, but its latest event %d (%s) says it exists: it was removed behind the service's back", id, e.Idx, e.Kind)})
		case live:
			compareRow(a, e, rep)
		}
	}
	for id := range rows { // live rows without any event
		rep.add(Problem{Kind: ProblemAdded, RecordID: id, Detail: fmt.Sprintf("record %d is in the table but not in the integrity log: it was added behind the service's back", id)})
	}
	return nil
}

// compareRow checks a live row against its latest event (record or update).
func compareRow(a Activity, e eventRow, rep *VerifyReport) {
	body, err := integrity.EncodeEvent(liveEvent(a, e))
	if err != nil {
		rep.add(Problem{Kind: ProblemChanged, RecordID: a.ID, Event: at(e.Idx), Detail: fmt.Sprintf("record %d cannot be encoded as the log encodes records: %v", a.ID, err)})
		return
	}
	if len(e.Leaf) == tlog.HashSize && integrity.LeafHash(body) == e.leaf() {
		return
	}
	detail := fmt.Sprintf("record %d differs from its latest event %d (%s): it was changed behind the service's back", a.ID, e.Idx, e.Kind)
	if e.Body != nil && !bytes.Equal(e.Body, body) {
		if ev, err := integrity.DecodeEvent(e.Body); err == nil && ev.Record != nil {
			if fields := differingFields(toRecord(a), *ev.Record); len(fields) > 0 {
				detail += "; fields: " + strings.Join(fields, ", ")
			}
		}
	}
	rep.add(Problem{Kind: ProblemChanged, RecordID: a.ID, Event: at(e.Idx), Detail: detail})
}

// liveEvent is the event the row would be if it is what event e logged.
func liveEvent(a Activity, e eventRow) integrity.Event {
	r := toRecord(a)
	if e.Kind == string(integrity.KindUpdate) {
		prev := int64(0)
		if ev, err := integrity.DecodeEvent(e.Body); err == nil {
			prev = ev.Prev
		}
		return integrity.UpdateEvent(prev, r)
	}
	return integrity.RecordEvent(r)
}

func differingFields(live, logged integrity.Record) []string {
	var out []string
	diff := func(name string, same bool) {
		if !same {
			out = append(out, name)
		}
	}
	diff("platform", live.Platform == logged.Platform)
	diff("serial", live.Serial == logged.Serial)
	diff("action_type", live.ActionType == logged.ActionType)
	diff("action_detail", live.ActionDetail == logged.ActionDetail)
	diff("username", live.Username == logged.Username)
	diff("timestamp", live.Timestamp.Unix() == logged.Timestamp.Unix())
	diff("source", live.Source == logged.Source)
	diff("source_id", live.SourceID == logged.SourceID)
	diff("workspace_id", live.WorkspaceID == logged.WorkspaceID)
	diff("extra", maps.Equal(nonNil(live.Extra), nonNil(logged.Extra)))
	diff("ingested_at", live.IngestedAt.Unix() == logged.IngestedAt.Unix())
	return out
}

// verifyMetaKey is where the last report is kept (sync_meta), so that a
// restart knows when the last full verification ran and what it found.
const verifyMetaKey = "integrity.verify"

// SaveVerifyReport keeps rep as the latest verification.
func (s *Store) SaveVerifyReport(ctx context.Context, rep VerifyReport) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	return s.SetMeta(ctx, verifyMetaKey, string(b))
}

// LastVerifyReport returns the latest saved verification, or ErrNotFound.
func (s *Store) LastVerifyReport(ctx context.Context) (VerifyReport, error) {
	v, err := s.Meta(ctx, verifyMetaKey)
	if err != nil {
		return VerifyReport{}, err
	}
	if v == "" {
		return VerifyReport{}, ErrNotFound
	}
	var rep VerifyReport
	if err := json.Unmarshal([]byte(v), &rep); err != nil {
		return VerifyReport{}, fmt.Errorf("reading the last verification: %w", err)
	}
	return rep, nil
}
