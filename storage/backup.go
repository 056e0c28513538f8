package storage

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
)

// A backup (integrity/SPEC.md §6) is the integrity log's events in order —
// every record's content and every change — plus the sync state a restore
// needs to resume, read in one snapshot, with a checkpoint signed at the
// snapshot's head. What the log holds is replayed from the events; what it
// does not is copied as state rows (stateTables); what derives from both
// (counts, search index) is rebuilt.

// colType is how a state column is carried across dialects.
type colType int

const (
	colText  colType = iota
	colInt           // integers
	colTime          // TIMESTAMPTZ or Unix seconds: RFC 3339 text in the backup
	colBool          // BOOLEAN or 0/1
	colJSON          // JSONB or TEXT: the JSON text
	colBytes         // BYTEA or BLOB: base64 in the backup
)

type stateCol struct {
	name string
	typ  colType
}

// stateTable is a table a backup copies row by row.
type stateTable struct {
	name  string
	cols  []stateCol
	where string // rows not copied, e.g. the source's own verification report
	// grows: rows are only ever added (signed checkpoints), so a later
	// backup's are added to the earlier ones' instead of replacing them.
	grows bool
	// added: how many of the last text columns came after backups were
	// written without them; an older backup's row restores them as "".
	added int
}

func cols(spec ...any) []stateCol {
	out := make([]stateCol, 0, len(spec)/2)
	for i := 0; i < len(spec); i += 2 {
		out = append(out, stateCol{spec[i].(string), spec[i+1].(colType)})
	}
	return out
}

// stateTables are the tables whose rows the log does not hold, copied
// whole into each backup (an incremental backup's state replaces the
// earlier one's). Every other table is replayed from the events
// (activity_log, legal_hold, access_log — the access trail is evidence and
// its events carry every field — integrity_*), rebuilt (counts, search index),
// or belongs to the running process only (backupSkipped).
var stateTables = []stateTable{
	{name: "sync_checkpoint", cols: cols("workspace", colText, "origin", colTime, "high_water", colTime, "updated_at", colTime,
		"fresh_at", colTime, "settled_at", colTime, "settle_remote", colInt, "settle_stored", colInt)},
	{name: "sync_coverage", cols: cols("workspace", colText, "start_at", colTime, "end_at", colTime)},
	{name: "sync_gap_ack", cols: cols("workspace", colText, "start_at", colTime, "end_at", colTime, "acknowledged_at", colTime, "note", colText,
		"acknowledged_by", colText), added: 1},
	{name: "sync_gap_reason", cols: cols("workspace", colText, "start_at", colTime, "end_at", colTime, "reason", colText, "retry", colBool)},
	// Learned TAPD facts (doctor, edges); the verification report is the
	// source database's, and counts.timezone the target's own.
	{name: "sync_meta", cols: cols("key", colText, "value", colText, "updated_at", colTime),
		where: `key NOT IN ('` + verifyMetaKey + `', '` + metaCountsZone + `')`},
	{name: "activity_target", cols: cols("target", colText, "source_id", colText, "timestamp", colTime)},
	{name: "activity_tombstone", cols: cols("source", colText, "source_id", colText, "deleted_at", colTime)},
	{name: "activity_history", cols: cols("id", colInt, "activity_id", colInt, "source_id", colText, "changed_at", colTime, "previous", colJSON)},
	{name: "integrity_checkpoint", cols: cols("tree_size", colInt, "root", colBytes, "signed", colText, "signed_at", colTime), grows: true},
	// Forwarding cursors (log indexes, which a restore keeps): a restored
	// mirror resumes each destination where the backup saw it, resending
	// at most what was delivered after it (duplicates carry their index).
	{name: "forward_cursor", cols: cols("name", colText, "next_idx", colInt, "last_success", colInt, "last_error", colText, "failing_since", colInt)},
	// TAPD's totals per target and month (the completeness report).
	{name: "sync_month_total", cols: cols("workspace", colText, "month_start", colTime, "verified_start", colTime, "verified_end", colTime,
		"verified_total", colInt, "verified_at", colTime, "settle_start", colTime, "settle_end", colTime, "settle_total", colInt,
		"settle_reported", colInt, "settled_at", colTime)},
	// Alerts: each rule's cursor (a log index) with its window state, and
	// the firings with their deliveries, so a restored mirror neither
	// forgets what fired nor pages again for it.
	{name: "alert_cursor", cols: cols("rule", colText, "next_idx", colInt)},
	{name: "alert_state", cols: cols("rule", colText, "key", colText, "state", colText)},
	{name: "alert_firing", cols: cols("id", colInt, "rule", colText, "key", colText, "condition", colText, "window_start", colInt,
		"window_end", colInt, "count", colInt, "first_record_id", colInt, "last_record_id", colInt, "log_index", colInt, "fired_at", colInt, "search", colText)},
	{name: "alert_delivery", cols: cols("firing_id", colInt, "notifier", colText, "status", colText, "attempts", colInt,
		"last_error", colText, "sent_at", colInt, "grouped", colInt)},
}

// backupReplayed are the tables a restore rebuilds from the events, and
// backupSkipped those a backup leaves out: run history and leases belong
// to the processes that ran them; counts and the search index are rebuilt.
var (
	backupReplayed = []string{"activity_log", "legal_hold", "access_log", "integrity_event", "integrity_hash", "integrity_state"}
	backupSkipped  = []string{"sync_run", "sync_lease", "activity_daily", "activity_daily_total", "activity_hourly", "schema_migrations"}
)

// BackupResult describes a written backup.
type BackupResult struct {
	Checkpoint SignedCheckpoint // signed at the snapshot's head
	From       int64            // the first event (0: full)
	Events     int64
	StateRows  int64
}

// WriteBackup writes a backup of the log's current head to w, gzip-compressed: every event
// from earlier's size on (earlier nil: from 0, a full backup) and the state
// rows, all read in one snapshot (a repeatable-read transaction on
// PostgreSQL, a read transaction on SQLite), so it runs beside serve. It
// signs a checkpoint of the snapshot's head with key. Memory stays flat:
// events are read and written a chunk at a time.
func (s *Store) WriteBackup(ctx context.Context, w io.Writer, key *integrity.Key, earlier *integrity.Checkpoint, now time.Time) (BackupResult, error) {
	var res BackupResult
	err := s.readTx(ctx, s.db, func(tx *sqlx.Tx) error {
		head, err := scanHead(tx.QueryRowxContext(ctx, `SELECT `+stateColumns+` FROM integrity_state WHERE id = 1`))
		if err != nil {
			return fmt.Errorf("reading the integrity log's head: %w", err)
		}
		// The stored hashes below the head never change: the writer reads
		// them on the pool while this snapshot's connection reads events.
		hr := s.newHashReader(ctx, s.db)
		if root, err := integrity.TreeHash(head.Size, hr); err != nil || root != head.Root {
			return fmt.Errorf("refusing to back up: the stored hashes give root %s at size %d, the log's head says %s (%v; run tapd-mirror verify --database)", root, head.Size, head.Root, err)
		}
		m := integrity.BackupManifest{Source: s.dialect}
		if earlier != nil {
			if m, err = s.continuing(*earlier, head, hr, key); err != nil {
				return err
			}
		}
		at := time.Unix(now.Unix(), 0).UTC()
		signed, err := key.Sign(integrity.Checkpoint{Size: head.Size, Root: head.Root, Time: at})
		if err != nil {
			return err
		}
		res.Checkpoint = SignedCheckpoint{Size: head.Size, Root: head.Root, Signed: signed, SignedAt: at}
		res.From = m.From
		zw := compressing(w)
		defer zw.abort()
		bw, err := integrity.NewBackupWriter(zw, key, signed, m, hr)
		if err != nil {
			return err
		}
		if res.Events, err = s.backupEvents(ctx, tx, bw, m.From, head.Size); err != nil {
			return err
		}
		// The last events' hashes are read before the state's queries start.
		if err := bw.EndEvents(); err != nil {
			return err
		}
		if res.StateRows, err = s.writeState(ctx, tx, bw); err != nil {
			return err
		}
		if err := bw.Close(); err != nil {
			return err
		}
		return zw.Close()
	})
	if err != nil {
		return res, fmt.Errorf("writing a backup: %w", err)
	}
	return res, nil
}

// gzipPipe compresses what is written to it in a goroutine of its own, so
// that compressing runs beside encoding (gzip BestSpeed: the text of events
// shrinks about six times).
type gzipPipe struct {
	*io.PipeWriter
	done   chan error
	waited bool
	err    error
}

func compressing(w io.Writer) *gzipPipe {
	pr, pw := io.Pipe()
	p := &gzipPipe{PipeWriter: pw, done: make(chan error, 1)}
	go func() {
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed) // the level is valid
		_, err := io.Copy(zw, bufio.NewReaderSize(pr, 256<<10))
		if err == nil {
			err = zw.Close()
		}
		pr.CloseWithError(err) // a failed write fails the writer's next one
		p.done <- err
	}()
	return p
}

// Close ends the stream and waits until it is compressed and written.
func (p *gzipPipe) Close() error {
	p.PipeWriter.Close()
	return p.wait()
}

// abort stops the compressor after a failure and waits for it (after
// Close, it does nothing).
func (p *gzipPipe) abort() {
	p.PipeWriter.CloseWithError(errors.New("backup aborted")) //nolint:errcheck // always nil
	p.wait()                                                  //nolint:errcheck // the failure is the caller's
}

func (p *gzipPipe) wait() error {
	if !p.waited {
		p.waited, p.err = true, <-p.done
	}
	return p.err
}

// backupEvents writes events [from, to) read in tx: a chunk at a time, the
// next chunk read while the last one is written (a PostgreSQL connection
// cannot read hashes while a result is open, so each chunk is read whole).
// At most three chunks are in memory.
func (s *Store) backupEvents(ctx context.Context, tx *sqlx.Tx, bw *integrity.BackupWriter, from, to int64) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan []eventRow, 1)
	read := make(chan error, 1)
	go func() {
		defer close(chunks)
		for lo := from; lo < to; lo += verifyChunk {
			chunk := make([]eventRow, 0, min(verifyChunk, to-lo))
			if err := s.eachEvent(ctx, tx, `e.idx >= ? AND e.idx < ?`, []any{lo, min(lo+verifyChunk, to)}, func(e eventRow) error {
				e.Body, e.Leaf = bytes.Clone(e.Body), bytes.Clone(e.Leaf)
				chunk = append(chunk, e)
				return nil
			}); err != nil {
				read <- fmt.Errorf("reading events from %d: %w", lo, err)
				return
			}
			select {
			case chunks <- chunk:
			case <-ctx.Done():
				read <- ctx.Err()
				return
			}
		}
		read <- nil
	}()
	var n int64
	for chunk := range chunks {
		for _, e := range chunk {
			if err := addEvent(bw, e); err != nil {
				cancel()
				for range chunks { // let the reader end before tx is used again
				}
				return n, err
			}
			n++
		}
	}
	return n, <-read
}

// continuing checks that the log extends an earlier backup's checkpoint and
// returns the manifest of the incremental backup that continues it.
func (s *Store) continuing(earlier integrity.Checkpoint, head LogHead, hr tlog.HashReader, key *integrity.Key) (integrity.BackupManifest, error) {
	m := integrity.BackupManifest{Source: s.dialect, From: earlier.Size}
	switch {
	case earlier.Origin != key.Name():
		return m, fmt.Errorf("the earlier backup is of log %q, this database's is %q", earlier.Origin, key.Name())
	case earlier.Size > head.Size:
		return m, fmt.Errorf("the earlier backup has %d events, this database's log only %d: it is of another database", earlier.Size, head.Size)
	}
	root, err := integrity.TreeHash(earlier.Size, hr)
	if err != nil {
		return m, err
	}
	if root != earlier.Root {
		return m, fmt.Errorf("this database's log does not extend the earlier backup: its first %d events hash to %s, the backup's to %s (another database, or the log was rewritten): take a full backup", earlier.Size, root, earlier.Root)
	}
	if m.Consistency, err = integrity.ConsistencyProof(head.Size, earlier.Size, hr); err != nil {
		return m, err
	}
	m.FromRoot = &root
	return m, nil
}

func addEvent(bw *integrity.BackupWriter, e eventRow) error {
	if e.Body == nil {
		return bw.AddWithheld(e.Idx, integrity.Kind(e.Kind), e.RecordID, e.leaf())
	}
	if e.event != nil { // encoded from its row: nothing to decode
		return bw.AddEncoded(e.Idx, *e.event, e.Body)
	}
	ev, err := integrity.DecodeEvent(e.Body)
	if err != nil {
		return fmt.Errorf("event %d: %w (run tapd-mirror verify --database)", e.Idx, err)
	}
	return bw.AddEncoded(e.Idx, ev, e.Body)
}

// stateLine is one state row in a backup: the table and its values in the
// order of stateTables' columns.
type stateLine struct {
	Table string            `json:"table"`
	Row   []json.RawMessage `json:"row"`
}

func (s *Store) writeState(ctx context.Context, tx *sqlx.Tx, bw *integrity.BackupWriter) (int64, error) {
	var n int64
	for _, t := range stateTables {
		names := make([]string, len(t.cols))
		for i, c := range t.cols {
			names[i] = c.name
		}
		q := `SELECT ` + strings.Join(names, ", ") + ` FROM ` + t.name
		if t.where != "" {
			q += ` WHERE ` + t.where
		}
		rows, err := tx.QueryContext(ctx, q)
		if err != nil {
			return n, fmt.Errorf("reading %s: %w", t.name, err)
		}
		err = func() error {
			defer rows.Close()
			dst := make([]any, len(t.cols))
			for i, c := range t.cols {
				dst[i] = scanTarget(c.typ)
			}
			for rows.Next() {
				if err := rows.Scan(dst...); err != nil {
					return err
				}
				line := stateLine{Table: t.name, Row: make([]json.RawMessage, len(dst))}
				for i, c := range t.cols {
					if line.Row[i], err = stateValue(c.typ, dst[i]); err != nil {
						return fmt.Errorf("column %s: %w", c.name, err)
					}
				}
				data, err := json.Marshal(line)
				if err != nil {
					return err
				}
				if err := bw.State(data); err != nil {
					return err
				}
				n++
			}
			return rows.Err()
		}()
		if err != nil {
			return n, fmt.Errorf("backing up %s: %w", t.name, err)
		}
	}
	return n, nil
}

func scanTarget(t colType) any {
	switch t {
	case colInt:
		return new(sql.NullInt64)
	case colTime:
		return new(dbTime)
	case colBool:
		return new(sql.NullBool)
	case colBytes:
		return new([]byte)
	default:
		return new(sql.NullString)
	}
}

func stateValue(t colType, v any) (json.RawMessage, error) {
	var x any
	switch p := v.(type) {
	case *sql.NullInt64:
		if p.Valid {
			x = p.Int64
		}
	case *dbTime:
		if !p.IsZero() {
			x = p.UTC().Format(time.RFC3339Nano)
		}
	case *sql.NullBool:
		if p.Valid {
			x = p.Bool
		}
	case *[]byte:
		if *p != nil {
			x = *p
		}
	case *sql.NullString:
		if p.Valid {
			x = p.String
		}
		if p.Valid && t == colJSON {
			// One text whatever the dialect: PostgreSQL's jsonb has its own
			// spacing and key order; encoding/json sorts the keys.
			var v any
			if err := json.Unmarshal([]byte(p.String), &v); err != nil {
				return nil, err
			}
			b, err := json.Marshal(v)
			if err != nil {
				return nil, err
			}
			x = string(b)
		}
	}
	return json.Marshal(x)
}

// stateArg converts a state value from a backup into a query parameter.
func (s *Store) stateArg(c stateCol, raw json.RawMessage) (any, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	var err error
	switch c.typ {
	case colInt:
		var v int64
		err = json.Unmarshal(raw, &v)
		return v, err
	case colTime:
		var text string
		if err = json.Unmarshal(raw, &text); err != nil {
			return nil, err
		}
		t, err := time.Parse(time.RFC3339Nano, text)
		if err != nil {
			return nil, err
		}
		return s.timeArg(t), nil
	case colBool:
		var v bool
		err = json.Unmarshal(raw, &v)
		return v, err
	case colBytes:
		var v []byte
		err = json.Unmarshal(raw, &v)
		return v, err
	default:
		var v string
		err = json.Unmarshal(raw, &v)
		return v, err
	}
}

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// Key is the verifier key every backup's checkpoint must be signed by.
	// Empty: the key the first backup names (which proves the backups
	// undamaged and of one log, not who wrote them).
	Key string
	// Published, when set, is a checkpoint published to a witness: the
	// restored log must extend it.
	Published *integrity.Checkpoint
}

// RestoredBackup describes one restored backup.
type RestoredBackup struct {
	Manifest   integrity.BackupManifest
	Checkpoint integrity.Checkpoint
	Events     int64
	StateRows  int64
}

// RestoreResult describes a restore.
type RestoreResult struct {
	Key     string // the verifier key the backups were checked with
	Backups []RestoredBackup
	Size    int64
	Root    tlog.Hash
	Records int64 // live records after the restore
}

// restoreBatch is how many events a restore appends at a time.
const restoreBatch = 2000

// Restore replays backups — a full one, then incrementals in order — into
// this database, which must be empty, in one transaction (not retried
// after a failover: the backups are streams): every event
// verified as it is read (the first bad one named), the rebuilt log's root
// checked against each backup's signed checkpoint, and the state checked
// against each seal, before anything is committed. Record and hold ids are
// the backups'.
func (s *Store) Restore(ctx context.Context, backups []io.Reader, o RestoreOptions) (RestoreResult, error) {
	res := RestoreResult{Key: o.Key}
	if len(backups) == 0 {
		return res, errors.New("restore: no backup given")
	}
	err := s.inTxOnce(ctx, "restoring", func(tx *sqlx.Tx) error {
		if err := s.checkEmpty(ctx, tx); err != nil {
			return err
		}
		head, err := s.lockLog(ctx, tx)
		if err != nil {
			return err
		}
		r := restorer{s: s, tx: tx, head: head}
		tree := &integrity.Frontier{}
		for i, f := range backups {
			rb, err := r.restoreOne(ctx, f, &res.Key, tree, o.Published)
			if err != nil {
				return fmt.Errorf("backup %d of %d: %w", i+1, len(backups), err)
			}
			res.Backups = append(res.Backups, rb)
		}
		if p := o.Published; p != nil && p.Size > r.head.Size {
			return fmt.Errorf("the published checkpoint has %d events, the backups only %d: they miss events a witness saw (is a later incremental backup missing?)", p.Size, r.head.Size)
		}
		if err := r.finish(ctx); err != nil {
			return err
		}
		res.Size, res.Root = r.head.Size, r.head.Root
		return tx.GetContext(ctx, &res.Records, `SELECT COUNT(*) FROM activity_log`)
	})
	return res, err
}

// checkEmpty refuses a database that holds records, events or sync state.
func (s *Store) checkEmpty(ctx context.Context, tx *sqlx.Tx) error {
	for _, t := range []string{"activity_log", "integrity_event", "legal_hold", "sync_checkpoint", "sync_coverage", "activity_tombstone"} {
		var n int64
		if err := tx.GetContext(ctx, &n, `SELECT COUNT(*) FROM (SELECT 1 FROM `+t+` LIMIT 1) AS x`); err != nil {
			return fmt.Errorf("checking that the database is empty: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("refusing to restore into a database that is not empty (%s holds rows): restore into a new, empty database", t)
		}
	}
	return nil
}

// restorer replays events into one transaction.
type restorer struct {
	s          *Store
	tx         *sqlx.Tx
	head       LogHead
	pending    []integrity.Record // new records not yet inserted, with their events' indexes
	pendingIdx []int64
	maxRecord  int64
	maxHold    int64
	maxAccess  int64
}

func (r *restorer) restoreOne(ctx context.Context, f io.Reader, key *string, tree *integrity.Frontier, published *integrity.Checkpoint) (RestoredBackup, error) {
	var out RestoredBackup
	rd, err := integrity.OpenBackup(f, *key, tree, published)
	if err != nil {
		return out, err
	}
	if *key == "" {
		*key = rd.Key // the later backups must be signed by the same key
	}
	out.Manifest, out.Checkpoint = rd.Manifest, rd.Checkpoint
	batch := make([]integrity.BackupEvent, 0, restoreBatch)
	for {
		e, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return out, err
		}
		batch = append(batch, e)
		out.Events++
		if len(batch) == restoreBatch {
			if err := r.apply(ctx, batch); err != nil {
				return out, err
			}
			batch = batch[:0]
		}
	}
	if err := r.apply(ctx, batch); err != nil {
		return out, err
	}
	// The rebuilt log, read back from what was stored, is the signed one.
	root, err := integrity.TreeHash(r.head.Size, r.s.newHashReader(ctx, r.tx))
	if err != nil {
		return out, err
	}
	if r.head.Size != rd.Checkpoint.Size || root != rd.Checkpoint.Root {
		return out, fmt.Errorf("%w: the restored log of %d events has root %s, the backup's checkpoint of %d events says %s",
			integrity.ErrMismatch, r.head.Size, root, rd.Checkpoint.Size, rd.Checkpoint.Root)
	}
	if out.StateRows, err = r.restoreState(ctx, rd); err != nil {
		return out, err
	}
	if _, err := r.tx.ExecContext(ctx, r.s.rebind(`INSERT INTO integrity_checkpoint (tree_size, root, signed, signed_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (tree_size) DO NOTHING`), rd.Checkpoint.Size, rd.Checkpoint.Root[:], string(rd.Signed()),
		r.s.timeArg(rd.Checkpoint.Time)); err != nil {
		return out, fmt.Errorf("storing the backup's checkpoint: %w", err)
	}
	return out, nil
}

// apply appends a batch of verified events to the log and replays them on
// the tables, in order.
func (r *restorer) apply(ctx context.Context, batch []integrity.BackupEvent) error {
	if len(batch) == 0 {
		return nil
	}
	enc := encodedEvents{events: make([]integrity.Event, len(batch)), bodies: make([][]byte, len(batch)), leaves: make([]tlog.Hash, len(batch))}
	var withheld []int64
	for i, e := range batch {
		enc.leaves[i] = e.Leaf
		ev := e.Event
		switch {
		case e.Withheld:
			withheld = append(withheld, e.Index)
			if ev.Kind == integrity.KindRecord || ev.Kind == integrity.KindUpdate {
				// Subject() of a record event is its record's id.
				ev = integrity.Event{Kind: ev.Kind, Record: &integrity.Record{ID: ev.RecordID}}
			}
		case ev.Kind != integrity.KindRecord:
			// A record event's content is its row (body NULL) until the row
			// changes or goes; every other event keeps its encoding.
			b, err := integrity.EncodeEvent(ev)
			if err != nil {
				return &integrity.EventError{Index: e.Index, Err: integrity.ErrMalformed, Detail: err.Error()}
			}
			enc.bodies[i] = b
		}
		enc.events[i] = ev
		r.maxRecord = max(r.maxRecord, ev.Subject())
	}
	head, err := r.s.appendEncoded(ctx, r.tx, r.head, enc)
	if err != nil {
		return err
	}
	r.head = head
	if len(withheld) > 0 {
		if err := r.s.withholding(ctx, r.tx); err != nil {
			return err
		}
		q, args, err := r.s.int64In(`UPDATE integrity_event SET body = `+r.s.emptyBody()+` WHERE idx`, withheld)
		if err != nil {
			return err
		}
		if _, err := r.tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("storing withheld events: %w", err)
		}
	}
	for _, e := range batch {
		if err := r.replay(ctx, e); err != nil {
			return &integrity.EventError{Index: e.Index, Err: integrity.ErrMismatch, Detail: err.Error()}
		}
	}
	return r.flush(ctx)
}

// replay applies one event to the tables.
func (r *restorer) replay(ctx context.Context, e integrity.BackupEvent) error {
	ev := e.Event
	if e.Withheld {
		return nil // purged content: its record is not restored, its purge removes nothing
	}
	if ev.Kind == integrity.KindRecord {
		r.pending, r.pendingIdx = append(r.pending, *ev.Record), append(r.pendingIdx, e.Index)
		return nil
	}
	if err := r.flush(ctx); err != nil {
		return err
	}
	tx, s := r.tx, r.s
	switch ev.Kind {
	case integrity.KindUpdate, integrity.KindDelete:
		id := ev.Subject()
		var row activityRow
		err := tx.GetContext(ctx, &row, s.rebind(`SELECT `+loggedActivityColumns+` FROM activity_log WHERE id = ?`), id)
		if isNoRows(err) {
			return fmt.Errorf("%s of record %d, which is not stored", ev.Kind, id)
		}
		if err != nil {
			return err
		}
		if err := s.keepContent(ctx, tx, []Activity{row.activity()}); err != nil {
			return err
		}
		if ev.Kind == integrity.KindDelete {
			_, err = tx.ExecContext(ctx, s.rebind(`DELETE FROM activity_log WHERE id = ?`), id)
			return err
		}
		a := recordActivity(*ev.Record)
		_, err = tx.ExecContext(ctx, s.rebind(`UPDATE activity_log SET platform = ?, serial = ?, action_type = ?, action_detail = ?,
			username = ?, timestamp = ?, extra = ?, ingested_at = ?, log_idx = ? WHERE id = ?`),
			a.Platform, a.Serial, a.ActionType, a.ActionDetail, a.Username, s.timeArg(a.Timestamp), a.extraText(),
			s.timeArg(a.IngestedAt), e.Index, id)
		return err
	case integrity.KindPurge:
		_, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM activity_log WHERE id = ?`), ev.RecordID)
		return err
	case integrity.KindHold:
		h := ev.Hold
		r.maxHold = max(r.maxHold, h.ID)
		_, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO legal_hold (id, name, reason, filter, created_by, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`), h.ID, h.Name, h.Reason, h.Filter, ev.Token, s.timeArg(ev.Time))
		return err
	case integrity.KindAccess:
		a := AccessEntry{ID: ev.Access.ID, At: ev.Time, Principal: ev.Access.Principal, SourceIP: ev.Access.SourceIP,
			ForwardedFor: ev.Access.ForwardedFor, Action: ev.Access.Action, Params: ev.Access.Params, Rows: ev.Access.Rows,
			Outcome: ev.Access.Outcome}
		r.maxAccess = max(r.maxAccess, a.ID)
		_, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO access_log
			(id, at, principal, source_ip, forwarded_for, action, params, row_count, outcome, log_idx)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`), a.ID, s.timeArg(a.At), a.Principal, a.SourceIP, a.ForwardedFor,
			a.Action, a.paramsText(), a.Rows, a.Outcome, e.Index)
		return err
	case integrity.KindRelease:
		res, err := tx.ExecContext(ctx, s.rebind(`UPDATE legal_hold SET released_at = ?, released_by = ?, release_reason = ?
			WHERE id = ? AND released_at IS NULL`), s.timeArg(ev.Time), ev.Token, ev.Hold.Reason, ev.Hold.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("release of legal hold %d, which is not placed", ev.Hold.ID)
		}
	}
	return nil
}

// recordActivity is the row a logged record is.
func recordActivity(rec integrity.Record) Activity {
	return Activity{ID: rec.ID, Platform: rec.Platform, Serial: rec.Serial, ActionType: rec.ActionType,
		ActionDetail: rec.ActionDetail, Username: rec.Username, Timestamp: rec.Timestamp, Source: rec.Source,
		SourceID: rec.SourceID, WorkspaceID: rec.WorkspaceID, Extra: nonNil(rec.Extra), IngestedAt: rec.IngestedAt}
}

// restoreColumns are the columns a restore inserts: activityColumns with the ids kept.
const restoreColumns = `id, platform, serial, action_type, action_detail, username, timestamp,
	source, source_id, workspace_id, extra, ingested_at, log_idx`

// flush inserts the pending new records, many rows per statement.
func (r *restorer) flush(ctx context.Context) error {
	for start := 0; start < len(r.pending); start += sqliteRowsPerInsert {
		end := min(start+sqliteRowsPerInsert, len(r.pending))
		args := make([]any, 0, 13*(end-start))
		for i := start; i < end; i++ {
			a := recordActivity(r.pending[i])
			var sourceID any
			if a.SourceID != "" {
				sourceID = a.SourceID
			}
			args = append(args, a.ID, a.Platform, a.Serial, a.ActionType, a.ActionDetail, a.Username, r.s.timeArg(a.Timestamp),
				a.Source, sourceID, a.WorkspaceID, a.extraText(), r.s.timeArg(a.IngestedAt), r.pendingIdx[i])
		}
		if _, err := r.tx.ExecContext(ctx, r.s.rebind(`INSERT INTO activity_log (`+restoreColumns+`) VALUES `+valueRows(end-start, 13)), args...); err != nil {
			return fmt.Errorf("inserting records %d to %d: %w", r.pending[start].ID, r.pending[end-1].ID, err)
		}
	}
	r.pending, r.pendingIdx = r.pending[:0], r.pendingIdx[:0]
	return nil
}

// restoreState replaces the state tables' rows with the backup's.
func (r *restorer) restoreState(ctx context.Context, rd *integrity.BackupReader) (int64, error) {
	tables := map[string]stateTable{}
	for _, t := range stateTables {
		tables[t.name] = t
		if t.grows {
			continue
		}
		q := `DELETE FROM ` + t.name
		if t.where != "" {
			q += ` WHERE ` + t.where
		}
		if _, err := r.tx.ExecContext(ctx, q); err != nil {
			return 0, fmt.Errorf("clearing %s: %w", t.name, err)
		}
	}
	var n int64
	var cur stateTable
	var rows [][]any
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		names := make([]string, len(cur.cols))
		for i, c := range cur.cols {
			names[i] = c.name
		}
		args := make([]any, 0, len(rows)*len(cur.cols))
		for _, row := range rows {
			args = append(args, row...)
		}
		q := `INSERT INTO ` + cur.name + ` (` + strings.Join(names, ", ") + `) VALUES ` + valueRows(len(rows), len(cur.cols))
		if cur.grows {
			q += ` ON CONFLICT DO NOTHING`
		}
		if _, err := r.tx.ExecContext(ctx, r.s.rebind(q), args...); err != nil {
			return fmt.Errorf("restoring %s: %w", cur.name, err)
		}
		rows = rows[:0]
		return nil
	}
	for {
		data, err := rd.NextState()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
		var l stateLine
		if err := json.Unmarshal(data, &l); err != nil {
			return n, fmt.Errorf("%w: state line %d: %v", integrity.ErrMalformed, n+1, err)
		}
		t, ok := tables[l.Table]
		for ok && len(l.Row) < len(t.cols) && len(l.Row) >= len(t.cols)-t.added {
			l.Row = append(l.Row, json.RawMessage(`""`))
		}
		if !ok || len(l.Row) != len(t.cols) {
			return n, fmt.Errorf("%w: state line %d: table %q with %d values is not one this version restores", integrity.ErrMalformed, n+1, l.Table, len(l.Row))
		}
		if t.name != cur.name || len(rows) == sqliteRowsPerInsert {
			if err := flush(); err != nil {
				return n, err
			}
			cur = t
		}
		row := make([]any, len(t.cols))
		for i, c := range t.cols {
			if row[i], err = r.s.stateArg(c, l.Row[i]); err != nil {
				return n, fmt.Errorf("%w: state line %d: %s.%s: %v", integrity.ErrMalformed, n+1, t.name, c.name, err)
			}
		}
		rows = append(rows, row)
		n++
	}
	return n, flush()
}

// finish moves the id sequences past every restored id, so new records
// never reuse the id of one deleted or purged, and rebuilds the counts.
func (r *restorer) finish(ctx context.Context) error {
	tx := r.tx
	var history, firing int64
	if err := tx.GetContext(ctx, &history, `SELECT COALESCE(MAX(id), 0) FROM activity_history`); err != nil {
		return err
	}
	if err := tx.GetContext(ctx, &firing, `SELECT COALESCE(MAX(id), 0) FROM alert_firing`); err != nil {
		return err
	}
	for _, seq := range []struct {
		table string
		max   int64
	}{{"activity_log", r.maxRecord}, {"legal_hold", r.maxHold}, {"access_log", r.maxAccess}, {"activity_history", history}, {"alert_firing", firing}} {
		if seq.max == 0 {
			continue
		}
		var err error
		if r.s.dialect == config.Postgres {
			_, err = tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence($1, 'id'), $2)`, seq.table, seq.max)
		} else {
			// dialect: AUTOINCREMENT keeps its high-water mark in sqlite_sequence.
			if _, err = tx.ExecContext(ctx, `INSERT INTO sqlite_sequence (name, seq) SELECT ?, 0
				WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)`, seq.table, seq.table); err == nil {
				_, err = tx.ExecContext(ctx, `UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?`, seq.max, seq.table)
			}
		}
		if err != nil {
			return fmt.Errorf("moving the id sequence of %s: %w", seq.table, err)
		}
	}
	return r.s.rebuildCounts(ctx, tx)
}
