package storage

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
)

// The integrity log (integrity/SPEC.md): every change to activity_log is an
// event appended, in the transaction that makes the change, to one RFC 6962
// Merkle log kept in integrity_event and integrity_hash. Each write path
// builds the events of its whole transaction and hands them to logEvents,
// the one place where a write reaches the log.

// LogHead is the log's current size and root.
type LogHead struct {
	Size int64
	Root tlog.Hash
	edge []byte // the complete subtrees' hashes, left to right (integrity_state.edge)
	// withheld is the withholding generation (integrity_state.withheld):
	// how many transactions withheld logged content so far.
	withheld int64
}

const stateColumns = `tree_size, root, edge, withheld`

func scanHead(row interface{ Scan(...any) error }) (LogHead, error) {
	var h LogHead
	var root []byte
	if err := row.Scan(&h.Size, &root, &h.edge, &h.withheld); err != nil {
		return h, err
	}
	copy(h.Root[:], root)
	return h, nil
}

// lockLog reads the log's head and locks it until the transaction ends, so
// that appends from every process take turns. dialect: SQLite's immediate
// transactions already hold the database's one write lock.
func (s *Store) lockLog(ctx context.Context, tx *sqlx.Tx) (LogHead, error) {
	q := `SELECT ` + stateColumns + ` FROM integrity_state WHERE id = 1`
	if s.dialect == config.Postgres {
		q += ` FOR UPDATE`
	}
	h, err := scanHead(tx.QueryRowxContext(ctx, q))
	if err != nil {
		return h, fmt.Errorf("locking the integrity log: %w", err)
	}
	return h, nil
}

// lockFirst takes the log's lock as a logged write's first step and returns
// its head. Every logged write takes it before it touches any row: writers
// queue in one order (no deadlock over the rows each locks next), and each
// knows the indexes its events will get, which its rows keep as log_idx.
func (s *Store) lockFirst(ctx context.Context, tx *sqlx.Tx) (LogHead, error) {
	if !s.logging() {
		return LogHead{}, nil
	}
	return s.lockLog(ctx, tx)
}

// emptyBody is the SQL literal of a withheld event's body (content a
// retention purge removed): empty, where NULL means "the live row holds it".
func (s *Store) emptyBody() string {
	if s.dialect == config.Postgres {
		return `''::bytea`
	}
	return `X''`
}

// Head returns the log's current size and root.
func (s *Store) Head(ctx context.Context) (LogHead, error) {
	h, err := scanHead(s.db.QueryRowxContext(ctx, `SELECT `+stateColumns+` FROM integrity_state WHERE id = 1`))
	if err != nil {
		return h, fmt.Errorf("reading the integrity log's head: %w", err)
	}
	s.tail.observe(h)
	return h, nil
}

// edgeIndexes are the storage indexes of the complete subtrees of a tree of
// the given size, left to right: what tlog.TreeHash reads.
func edgeIndexes(size int64) []int64 {
	var out []int64
	tlog.TreeHash(size, tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) { //nolint:errcheck // the reader never fails
		out = append(out, indexes...)
		return make([]tlog.Hash, len(indexes)), nil
	}))
	return out
}

// frontier is the head's right edge, from which appends go on without
// reading any stored hash.
func (h LogHead) frontier() (*integrity.Frontier, error) {
	edge := h.edge
	f, err := integrity.NewFrontier(h.Size, tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		if len(edge) != len(indexes)*tlog.HashSize {
			return nil, fmt.Errorf("the stored edge holds %d bytes, a tree of %d events needs %d hashes", len(edge), h.Size, len(indexes))
		}
		out := make([]tlog.Hash, len(indexes))
		for i := range out {
			copy(out[i][:], edge[i*tlog.HashSize:])
		}
		return out, nil
	}))
	if err != nil {
		return nil, fmt.Errorf("reading the integrity log's edge: %w", err)
	}
	return f, nil
}

// edgeOf is f's right edge as integrity_state.edge stores it.
func edgeOf(f *integrity.Frontier) ([]byte, error) {
	hs, err := f.ReadHashes(edgeIndexes(f.Size()))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(hs)*tlog.HashSize)
	for _, h := range hs {
		out = append(out, h[:]...)
	}
	return out, nil
}

// hashRun is one row of integrity_hash: consecutive hashes from start on.
type hashRun struct {
	start  int64
	hashes []byte
}

func (r hashRun) covers(x int64) bool {
	return x >= r.start && x < r.start+int64(len(r.hashes)/tlog.HashSize)
}

func (r hashRun) at(x int64) tlog.Hash {
	var h tlog.Hash
	copy(h[:], r.hashes[(x-r.start)*tlog.HashSize:])
	return h
}

// hashReader reads stored tree hashes through q (a transaction, or a pool):
// a tlog.HashReader over integrity_hash's runs. It keeps the runs it read,
// so a reader used for many proofs (a bundle) reads each run about once.
type hashReader struct {
	ctx  context.Context
	q    sqlx.QueryerContext
	s    *Store
	runs *[]hashRun // most recently read first; nil: no cache
}

// maxCachedRuns bounds a reader's cache (a run is at most hashRunSize hashes).
const maxCachedRuns = 64

func (s *Store) newHashReader(ctx context.Context, q sqlx.QueryerContext) hashReader {
	return hashReader{ctx: ctx, q: q, s: s, runs: &[]hashRun{}}
}

func (h hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		run, err := h.run(x)
		if err != nil {
			return nil, err
		}
		out[i] = run.at(x)
	}
	return out, nil
}

func (h hashReader) run(x int64) (hashRun, error) {
	if h.runs != nil {
		for _, r := range *h.runs {
			if r.covers(x) {
				return r, nil
			}
		}
	}
	var r hashRun
	err := h.q.QueryRowxContext(h.ctx, h.s.rebind(`SELECT idx, hashes FROM integrity_hash WHERE idx <= ? ORDER BY idx DESC LIMIT 1`), x).
		Scan(&r.start, &r.hashes)
	if err != nil && !isNoRows(err) {
		return r, fmt.Errorf("reading tree hash %d: %w", x, err)
	}
	if err != nil || !r.covers(x) || len(r.hashes)%tlog.HashSize != 0 {
		return r, fmt.Errorf("tree hash %d is not stored", x)
	}
	if h.runs != nil {
		*h.runs = append([]hashRun{r}, (*h.runs)[:min(len(*h.runs), maxCachedRuns-1)]...)
	}
	return r, nil
}

// int64In is "prefix IN (ids)" for the dialect, rebound: one array
// parameter on PostgreSQL, a list on SQLite.
func (s *Store) int64In(prefix string, ids []int64) (string, []any, error) {
	if s.dialect == config.Postgres {
		return prefix + ` = ANY($1::bigint[])`, []any{pq.Array(ids)}, nil
	}
	q, args, err := sqlx.In(prefix+` IN (?)`, ids)
	if err != nil {
		return "", nil, err
	}
	return s.rebind(q), args, nil
}

// HashReader reads the log's stored hashes (bundles, proofs, verification);
// the log only grows, so no snapshot is needed.
func (s *Store) HashReader(ctx context.Context) tlog.HashReader { return s.newHashReader(ctx, s.db) }

// logEvents appends the events of one transaction's change to the log, as
// its last step: it locks the log's head, refuses the change if a legal hold
// covers one of the removed records (a *HeldError), and stores the events,
// the tree's new hashes and the new head. Every write to activity_log goes
// through here once per transaction: one append per transaction keeps the
// log off the ingest's critical path.
func (s *Store) logEvents(ctx context.Context, tx *sqlx.Tx, events []integrity.Event, removed []Activity) error {
	if len(events) == 0 || s.noLog {
		return nil
	}
	head, err := s.lockLog(ctx, tx)
	if err != nil {
		return err
	}
	if len(removed) > 0 {
		// Checked under the log's lock: placing a hold takes it too, so a
		// hold committed before this point is seen, and none can slip in after.
		holds, err := s.activeHolds(ctx, tx)
		if err != nil {
			return err
		}
		if err := checkHolds(holds, removed); err != nil {
			return err
		}
	}
	_, err = s.appendLocked(ctx, tx, head, events)
	return err
}

// hashRunSize bounds the hashes of one integrity_hash row (32 KiB).
const hashRunSize = 1024

// appendLocked stores events at the end of the log whose locked head is
// head, and returns the new head. It reads nothing: the head's edge is all
// the tree needs to grow.
func (s *Store) appendLocked(ctx context.Context, tx *sqlx.Tx, head LogHead, events []integrity.Event) (LogHead, error) {
	enc, err := encodeEvents(events)
	if err != nil {
		return head, err
	}
	return s.appendEncoded(ctx, tx, head, enc)
}

// encodedEvents are events with their canonical encodings and leaf hashes.
type encodedEvents struct {
	events []integrity.Event
	bodies [][]byte
	leaves []tlog.Hash
	err    error
}

// encodeEvents encodes and hashes events. A record event's encoding is only
// hashed, not kept: its row holds the content (insertEvents).
func encodeEvents(events []integrity.Event) (encodedEvents, error) {
	enc := encodedEvents{events: events, bodies: make([][]byte, len(events)), leaves: make([]tlog.Hash, len(events))}
	var scratch, b []byte
	var err error
	for i, e := range events {
		if scratch, b, enc.leaves[i], err = integrity.AppendLeaf(scratch[:0], e); err != nil {
			return enc, fmt.Errorf("logging a change of record %d: %w", e.Subject(), err)
		}
		if e.Kind != integrity.KindRecord {
			enc.bodies[i] = bytes.Clone(b)
		}
	}
	return enc, nil
}

// logEncoder encodes a transaction's events part by part in the background
// while the transaction goes on writing rows: encoding and hashing overlap
// the database's work instead of following it.
type logEncoder struct {
	wg    sync.WaitGroup
	parts []*encodedEvents
}

// add starts encoding events, which must not change afterwards.
func (l *logEncoder) add(events []integrity.Event) {
	if len(events) == 0 {
		return
	}
	part := &encodedEvents{}
	l.parts = append(l.parts, part)
	l.wg.Go(func() {
		enc, err := encodeEvents(events)
		*part = enc
		part.err = err
	})
}

// wait returns every part's events, encodings and leaves, in order.
func (l *logEncoder) wait() (encodedEvents, error) {
	l.wg.Wait()
	var all encodedEvents
	for _, p := range l.parts {
		if p.err != nil {
			return all, p.err
		}
		all.events = append(all.events, p.events...)
		all.bodies = append(all.bodies, p.bodies...)
		all.leaves = append(all.leaves, p.leaves...)
	}
	return all, nil
}

// appendEncoded is appendLocked for events already encoded.
func (s *Store) appendEncoded(ctx context.Context, tx *sqlx.Tx, head LogHead, enc encodedEvents) (LogHead, error) {
	events, bodies, leaves := enc.events, enc.bodies, enc.leaves
	f, err := head.frontier()
	if err != nil {
		return head, err
	}
	hashes := make([]byte, 0, 2*len(events)*tlog.HashSize)
	for i := range events {
		hs, err := f.Append(leaves[i])
		if err != nil {
			return head, fmt.Errorf("appending to the integrity log: %w", err)
		}
		for _, h := range hs {
			hashes = append(hashes, h.Hash[:]...)
		}
	}
	next := LogHead{Size: f.Size(), withheld: head.withheld}
	if next.Root, err = f.Root(); err != nil {
		return head, err
	}
	if next.edge, err = edgeOf(f); err != nil {
		return head, err
	}
	if err := s.insertEvents(ctx, tx, head.Size, events, bodies, leaves); err != nil {
		return head, err
	}
	s.tail.appended(tx, head, enc)
	first := tlog.StoredHashIndex(0, head.Size)
	for off := 0; off < len(hashes); off += hashRunSize * tlog.HashSize {
		run := hashes[off:min(off+hashRunSize*tlog.HashSize, len(hashes))]
		if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO integrity_hash (idx, hashes) VALUES (?, ?)`),
			first+int64(off/tlog.HashSize), run); err != nil {
			return head, fmt.Errorf("storing tree hashes: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`UPDATE integrity_state SET tree_size = ?, root = ?, edge = ? WHERE id = 1`),
		next.Size, next.Root[:], next.edge); err != nil {
		return head, fmt.Errorf("moving the integrity log's head: %w", err)
	}
	return next, nil
}

// sqliteRowsPerInsert bounds a multi-row INSERT on SQLite (5 parameters a row).
const sqliteRowsPerInsert = 500

func (s *Store) insertEvents(ctx context.Context, tx *sqlx.Tx, first int64, events []integrity.Event, bodies [][]byte, leaves []tlog.Hash) error {
	n := len(events)
	idx, kinds, ids, hashes := make([]int64, n), make([]string, n), make([]int64, n), make([][]byte, n)
	// bodies[i] is nil for a record event: its content is the row written
	// beside it, stored (keepContent) only when that row changes or goes.
	for i, e := range events {
		idx[i], kinds[i], ids[i], hashes[i] = first+int64(i), string(e.Kind), e.Subject(), leaves[i][:]
	}
	if s.dialect == config.Postgres {
		// dialect: five array parameters, one round trip whatever the batch.
		// An empty body in the array is none (an encoding is never empty).
		if _, err := tx.ExecContext(ctx, `INSERT INTO integrity_event (idx, kind, record_id, body, leaf_hash)
			SELECT i, k, r, NULLIF(b, ''::bytea), l FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bytea[], $5::bytea[]) AS u(i, k, r, b, l)`,
			pq.Array(idx), pq.Array(kinds), pq.Array(ids), pq.ByteaArray(bodies), pq.ByteaArray(hashes)); err != nil {
			return fmt.Errorf("storing %d integrity events: %w", n, err)
		}
		return nil
	}
	for start := 0; start < n; start += sqliteRowsPerInsert {
		end := min(start+sqliteRowsPerInsert, n)
		args := make([]any, 0, 5*(end-start))
		for i := start; i < end; i++ {
			var body any // NULL, not an empty blob
			if bodies[i] != nil {
				body = bodies[i]
			}
			args = append(args, idx[i], kinds[i], ids[i], body, hashes[i])
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO integrity_event (idx, kind, record_id, body, leaf_hash) VALUES `+valueRows(end-start, 5), args...); err != nil {
			return fmt.Errorf("storing %d integrity events: %w", end-start, err)
		}
	}
	return nil
}

// WithoutIntegrityLog makes the store write records without logging them:
// for the benchmark's same-run baseline only. A store in this mode leaves
// changes the log cannot account for, which verify reports.
func (s *Store) WithoutIntegrityLog() { s.noLog = true }

// logging reports whether writes build events (all but the benchmark baseline).
func (s *Store) logging() bool { return !s.noLog }

// toRecord is a as the log encodes it: every column as stored, with id and
// ingested_at, extra as its JSON text reads back.
func toRecord(a Activity) integrity.Record {
	return integrity.Record{ID: a.ID, Platform: a.Platform, Serial: a.Serial, ActionType: a.ActionType,
		ActionDetail: a.ActionDetail, Username: a.Username, Timestamp: a.Timestamp, Source: a.Source,
		SourceID: a.SourceID, WorkspaceID: a.WorkspaceID, Extra: a.ExtraFields(), IngestedAt: a.IngestedAt}
}

// storedExtra is extra as it reads back from its JSON text: encoding/json
// writes each byte of invalid UTF-8 as U+FFFD, so the log must say the same.
func storedExtra(m map[string]string) map[string]string {
	clean := true
	for k, v := range m {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			clean = false
			break
		}
	}
	if clean {
		return m
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[jsonText(k)] = jsonText(v)
	}
	return out
}

// jsonText replaces each invalid UTF-8 byte with U+FFFD, as encoding/json does.
func jsonText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// nowSecond is the time a write stamps as ingested_at: the log keeps whole
// seconds, so the table does too and both say the same.
func nowSecond() time.Time { return time.Unix(time.Now().Unix(), 0).UTC() }

// idBatch bounds the ids of one IN query (SQLite's parameter limit).
const idBatch = 5000

// resolveLogIdx fills in the latest event of rows logged before rows kept
// it (log_idx NULL; migration 0008 leaves them so, not to rewrite a big
// table): their events all store their content, so the record index finds
// them. A row still without one was never logged (ErrUnlogged, later).
func (s *Store) resolveLogIdx(ctx context.Context, tx *sqlx.Tx, rows []Activity) error {
	var ids []int64
	for _, a := range rows {
		if a.logIdx == nil {
			ids = append(ids, a.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	latest := make(map[int64]int64, len(ids))
	for start := 0; start < len(ids); start += idBatch {
		q, args, err := s.int64In(`SELECT record_id, MAX(idx) FROM integrity_event WHERE body IS NOT NULL AND record_id`, ids[start:min(start+idBatch, len(ids))])
		if err != nil {
			return err
		}
		rows, err := tx.QueryxContext(ctx, q+` GROUP BY record_id`, args...)
		if err != nil {
			return fmt.Errorf("reading records' latest events: %w", err)
		}
		for rows.Next() {
			var id, idx int64
			if err := rows.Scan(&id, &idx); err != nil {
				rows.Close()
				return err
			}
			latest[id] = idx
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reading records' latest events: %w", err)
		}
	}
	for i := range rows {
		if idx, ok := latest[rows[i].ID]; ok && rows[i].logIdx == nil {
			rows[i].logIdx = &idx
		}
	}
	return nil
}

// ErrUnlogged means a record has no event in the integrity log: it was
// written behind the service's back (or by an older version still running).
var ErrUnlogged = errors.New("record is not in the integrity log")

// keepContent stores the content of the record events of rows about to be
// changed or deleted (read with loggedActivityColumns): until now the row
// itself held it (a record event's body is NULL while its row is the version
// it logged). A latest event that is not a record event keeps its content.
func (s *Store) keepContent(ctx context.Context, tx *sqlx.Tx, rows []Activity) error {
	idx, bodies := make([]int64, 0, len(rows)), make([][]byte, 0, len(rows))
	for _, a := range rows {
		if a.logIdx == nil {
			continue
		}
		b, err := integrity.EncodeEvent(integrity.RecordEvent(toRecord(a)))
		if err != nil {
			return fmt.Errorf("keeping the logged content of record %d: %w (run tapd-mirror verify --database)", a.ID, err)
		}
		idx, bodies = append(idx, *a.logIdx), append(bodies, b)
	}
	if len(idx) == 0 {
		return nil
	}
	if s.dialect == config.Postgres {
		if _, err := tx.ExecContext(ctx, `UPDATE integrity_event AS e SET body = u.b
			FROM unnest($1::bigint[], $2::bytea[]) AS u(i, b) WHERE e.idx = u.i AND e.kind = 'record' AND e.body IS NULL`,
			pq.Array(idx), pq.ByteaArray(bodies)); err != nil {
			return fmt.Errorf("keeping the logged content of %d records: %w", len(idx), err)
		}
		return nil
	}
	if err := execRows(ctx, tx, `UPDATE integrity_event SET body = ? WHERE idx = ? AND kind = 'record' AND body IS NULL`,
		len(idx), func(i int) []any { return []any{bodies[i], idx[i]} }); err != nil {
		return fmt.Errorf("keeping the logged content of record events: %w", err)
	}
	return nil
}

// execRows runs q once per row i < n with args(i), prepared once: how
// SQLite (dialect:) does what PostgreSQL does with array parameters.
func execRows(ctx context.Context, tx *sqlx.Tx, q string, n int, args func(i int) []any) error {
	stmt, err := tx.PreparexContext(ctx, q)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for i := range n {
		if _, err := stmt.ExecContext(ctx, args(i)...); err != nil {
			return err
		}
	}
	return nil
}

// removalEvents builds the delete or purge events of removed records (read
// with loggedActivityColumns): each points at the record's latest event.
// keep stores the removed rows' content in their record events (a delete);
// a purge lets it go.
func (s *Store) removalEvents(ctx context.Context, tx *sqlx.Tx, removed []Activity, keep bool, mk func(a Activity, prev int64) integrity.Event) ([]integrity.Event, error) {
	if !s.logging() || len(removed) == 0 {
		return nil, nil
	}
	if err := s.resolveLogIdx(ctx, tx, removed); err != nil {
		return nil, err
	}
	events := make([]integrity.Event, len(removed))
	for i, a := range removed {
		if a.logIdx == nil {
			return nil, fmt.Errorf("record %d: %w (added behind the service's back? run tapd-mirror verify --database)", a.ID, ErrUnlogged)
		}
		events[i] = mk(a, *a.logIdx)
	}
	if keep {
		if err := s.keepContent(ctx, tx, removed); err != nil {
			return nil, err
		}
	}
	return events, nil
}

// upgradeChunk is how many existing rows one transaction of the upgrade logs.
const upgradeChunk = 5000

// BackfillLog appends a record event for every row that predates the log
// (ids up to integrity_state.upgrade_max_id, set by the migration), in id
// order, in transactions of upgradeChunk rows. It is idempotent and safe to
// run from several processes at once, and returns how many rows it logged.
// History before the upgrade is attested from the upgrade on.
func (s *Store) BackfillLog(ctx context.Context) (int64, error) {
	var total int64
	for {
		var n int64
		done := false
		err := s.inIdempotentTx(ctx, "logging the records that predate the integrity log", func(tx *sqlx.Tx) error {
			head, err := s.lockLog(ctx, tx)
			if err != nil {
				return err
			}
			var upTo, from int64
			if err := tx.QueryRowxContext(ctx, `SELECT upgrade_max_id, backfilled_to FROM integrity_state WHERE id = 1`).Scan(&upTo, &from); err != nil {
				return err
			}
			if from >= upTo {
				done = true
				return nil
			}
			var rows []Activity
			err = eachActivity(ctx, tx, s.rebind(`SELECT `+activityColumns+` FROM activity_log WHERE id > ? AND id <= ? ORDER BY id LIMIT ?`),
				[]any{from, upTo, upgradeChunk}, func(a Activity) error {
					rows = append(rows, a)
					return nil
				})
			if err != nil {
				return err
			}
			last := upTo
			if len(rows) == upgradeChunk {
				last = rows[len(rows)-1].ID
			}
			events := make([]integrity.Event, len(rows))
			ids, logIdx := make([]int64, len(rows)), make([]int64, len(rows))
			for i, a := range rows {
				events[i] = integrity.RecordEvent(toRecord(a))
				ids[i], logIdx[i] = a.ID, head.Size+int64(i)
			}
			if len(events) > 0 {
				if _, err := s.appendLocked(ctx, tx, head, events); err != nil {
					return err
				}
				if err := s.setLogIdx(ctx, tx, ids, logIdx); err != nil {
					return err
				}
			}
			n = int64(len(rows))
			_, err = tx.ExecContext(ctx, s.rebind(`UPDATE integrity_state SET backfilled_to = ? WHERE id = 1`), last)
			return err
		})
		total += n
		if err != nil || done {
			return total, err
		}
	}
}

// setLogIdx records in each row ids[i] the index of its latest event.
func (s *Store) setLogIdx(ctx context.Context, tx *sqlx.Tx, ids, logIdx []int64) error {
	if s.dialect == config.Postgres {
		if _, err := tx.ExecContext(ctx, `UPDATE activity_log AS a SET log_idx = u.x
			FROM unnest($1::bigint[], $2::bigint[]) AS u(id, x) WHERE a.id = u.id`, pq.Array(ids), pq.Array(logIdx)); err != nil {
			return fmt.Errorf("recording the rows' events: %w", err)
		}
		return nil
	}
	if err := execRows(ctx, tx, `UPDATE activity_log SET log_idx = ? WHERE id = ?`,
		len(ids), func(i int) []any { return []any{logIdx[i], ids[i]} }); err != nil {
		return fmt.Errorf("recording the rows' events: %w", err)
	}
	return nil
}

// readTx runs fn in a read-only transaction that sees one snapshot: a
// repeatable-read transaction on PostgreSQL, a deferred one on SQLite (WAL
// readers never block the writer).
func (s *Store) readTx(ctx context.Context, db *sqlx.DB, fn func(tx *sqlx.Tx) error) error {
	opts := &sql.TxOptions{ReadOnly: true}
	if s.dialect == config.Postgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := db.BeginTxx(ctx, opts)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	return fn(tx)
}
