package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tapd-mirror/tapd-mirror/integrity"
)

// The access trail (README "For auditors"): every access beyond the
// contract's plain list and count, one row of access_log and one access
// event of the integrity log each. A change records its entry in its own
// transaction (WithAccess); a read records it right after the answer
// (AppendAccess). Either way the row and its event commit together, so a
// row removed or altered with plain SQL is named by verify --database.

// AccessEntry is one entry of the access trail.
type AccessEntry struct {
	ID           int64     `json:"id"`
	At           time.Time `json:"at"`
	Principal    string    `json:"principal"` // the token's name; "" anonymous
	SourceIP     string    `json:"source_ip"`
	ForwardedFor string    `json:"forwarded_for,omitempty"` // only through a trusted proxy
	Action       string    `json:"action"`
	// Params are the request's parameters (filters, format, ids) and its
	// HTTP status as "status": strings, stored as a JSON object.
	Params   map[string]string `json:"params"`
	Rows     int64             `json:"rows"`    // rows returned or affected
	Outcome  string            `json:"outcome"` // AccessOK, AccessDenied, AccessInvalid or AccessError
	LogIndex int64             `json:"log_index"`
}

// The outcomes of an access.
const (
	AccessOK      = "ok"      // answered
	AccessDenied  = "denied"  // refused: no or a wrong token, too little scope
	AccessInvalid = "invalid" // refused: bad input, not found, conflict, too many exports
	AccessError   = "error"   // the server failed
)

// AccessPurgeAction is the action of a trail retention purge; its params'
// "below" is the log index under which access events were withheld.
const AccessPurgeAction = "access.purge"

// AccessFilter selects trail entries; zero fields do not filter.
type AccessFilter struct {
	Principal string
	Action    string
	From, To  time.Time // [From, To)
	// Newest lists newest first: after then means ids below it.
	Newest bool
}

func (e AccessEntry) event() integrity.Event {
	return integrity.AccessEvent(integrity.Access{ID: e.ID, Principal: e.Principal, SourceIP: e.SourceIP,
		ForwardedFor: e.ForwardedFor, Action: e.Action, Params: maps.Clone(e.Params), Rows: e.Rows, Outcome: e.Outcome}, e.At)
}

func (e AccessEntry) paramsText() string {
	b, _ := json.Marshal(nonNil(e.Params)) // strings always encode
	return string(b)
}

type accessKey struct{}

// WithAccess returns ctx carrying e: the change made with ctx records e in
// its own transaction (DeleteActivity, CreateHold, ReleaseHold,
// AcknowledgeGaps), with Outcome ok and the rows it changed, and fills in
// its ID and LogIndex. A change that fails records nothing: e.LogIndex
// stays 0 and the caller appends the failure itself.
func WithAccess(ctx context.Context, e *AccessEntry) context.Context {
	return context.WithValue(ctx, accessKey{}, e)
}

// AccessOf returns the entry WithAccess put in ctx, or nil.
func AccessOf(ctx context.Context) *AccessEntry {
	e, _ := ctx.Value(accessKey{}).(*AccessEntry)
	return e
}

// recordAccess records ctx's pending entry, if any and not yet recorded, in
// tx: the last step of a change's transaction, rows being what it changed.
func (s *Store) recordAccess(ctx context.Context, tx *sqlx.Tx, rows int64) error {
	e := AccessOf(ctx)
	if e == nil || !s.logging() {
		return nil
	}
	if e.ID != 0 {
		// Recorded by an earlier change of the same request, or by an
		// earlier try of this transaction whose COMMIT failed (a failover
		// retry): only the first kind left its row.
		var n int
		if err := tx.GetContext(ctx, &n, s.rebind(`SELECT COUNT(*) FROM access_log WHERE id = ?`), e.ID); err != nil {
			return fmt.Errorf("looking up access entry %d: %w", e.ID, err)
		}
		if n > 0 {
			return nil
		}
		e.ID, e.LogIndex = 0, 0
	}
	saved := *e
	e.Rows, e.Outcome = rows, AccessOK
	if err := s.appendAccessTx(ctx, tx, []*AccessEntry{e}); err != nil {
		*e = saved
		return err
	}
	return nil
}

// AppendAccess records entries (reads, after their answers; failed
// changes) in one transaction, filling in their ID, LogIndex and, if zero,
// At.
func (s *Store) AppendAccess(ctx context.Context, entries ...*AccessEntry) error {
	if len(entries) == 0 {
		return nil
	}
	saved := make([]AccessEntry, len(entries))
	for i, e := range entries {
		saved[i] = *e
	}
	err := s.inTx(ctx, "recording accesses", func(tx *sqlx.Tx) error { return s.appendAccessTx(ctx, tx, entries) })
	if err != nil {
		for i, e := range entries {
			*e = saved[i]
		}
	}
	return err
}

func (s *Store) appendAccessTx(ctx context.Context, tx *sqlx.Tx, entries []*AccessEntry) error {
	head, err := s.lockLog(ctx, tx)
	if err != nil {
		return err
	}
	events := make([]integrity.Event, len(entries))
	for i, e := range entries {
		if e.At.IsZero() {
			e.At = nowSecond()
		}
		e.At = time.Unix(e.At.Unix(), 0).UTC() // the log keeps seconds
		e.LogIndex = head.Size + int64(i)
		if err := tx.QueryRowxContext(ctx, s.rebind(`INSERT INTO access_log
			(at, principal, source_ip, forwarded_for, action, params, row_count, outcome, log_idx)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`), s.timeArg(e.At), e.Principal, e.SourceIP, e.ForwardedFor,
			e.Action, e.paramsText(), e.Rows, e.Outcome, e.LogIndex).Scan(&e.ID); err != nil {
			return fmt.Errorf("recording access %s: %w", e.Action, err)
		}
		events[i] = e.event()
	}
	_, err = s.appendLocked(ctx, tx, head, events)
	return err
}

type accessRow struct {
	ID           int64  `db:"id"`
	At           dbTime `db:"at"`
	Principal    string `db:"principal"`
	SourceIP     string `db:"source_ip"`
	ForwardedFor string `db:"forwarded_for"`
	Action       string `db:"action"`
	Params       string `db:"params"`
	Rows         int64  `db:"row_count"`
	Outcome      string `db:"outcome"`
	LogIdx       int64  `db:"log_idx"`
}

const accessColumns = `id, at, principal, source_ip, forwarded_for, action, params, row_count, outcome, log_idx`

func (r accessRow) entry() (AccessEntry, error) {
	e := AccessEntry{ID: r.ID, At: r.At.Time, Principal: r.Principal, SourceIP: r.SourceIP, ForwardedFor: r.ForwardedFor,
		Action: r.Action, Rows: r.Rows, Outcome: r.Outcome, LogIndex: r.LogIdx}
	if err := json.Unmarshal([]byte(r.Params), &e.Params); err != nil {
		return e, fmt.Errorf("access entry %d: reading its params: %w", r.ID, err)
	}
	return e, nil
}

// ListAccess returns up to limit trail entries matching f, keyset paged by
// id: oldest first, those with id > after (after 0: from the start); with
// f.Newest, newest first, those with id < after (after 0: from the newest).
func (s *Store) ListAccess(ctx context.Context, f AccessFilter, limit int, after int64) ([]AccessEntry, error) {
	conds, args := []string{"1 = 1"}, []any{}
	add := func(cond string, v any) { conds, args = append(conds, cond), append(args, v) }
	if f.Principal != "" {
		add("principal = ?", f.Principal)
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if !f.From.IsZero() {
		add("at >= ?", s.timeArg(f.From))
	}
	if !f.To.IsZero() {
		add("at < ?", s.timeArg(f.To))
	}
	order := "ASC"
	switch {
	case f.Newest:
		order = "DESC"
		if after > 0 {
			add("id < ?", after)
		}
	case after > 0:
		add("id > ?", after)
	}
	var rows []accessRow
	if err := s.db.SelectContext(ctx, &rows, s.rebind(`SELECT `+accessColumns+` FROM access_log WHERE `+
		strings.Join(conds, " AND ")+` ORDER BY id `+order+` LIMIT ?`), append(args, limit)...); err != nil {
		return nil, fmt.Errorf("reading the access trail: %w", err)
	}
	out := make([]AccessEntry, 0, len(rows))
	for _, r := range rows {
		e, err := r.entry()
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// PurgeAccess removes the trail entries older than cutoff under the trail's
// retention, in one transaction that also withholds their events' content
// (the leaf hashes stay) and records the purge itself as an entry of
// principal: action access.purge, params "below" (the log index under which
// every access event is withheld) and "cutoff". It removes exactly the
// entries logged before the first one at or after cutoff, so "below" says
// which withheld events verify may accept. It returns how many it removed.
func (s *Store) PurgeAccess(ctx context.Context, cutoff time.Time, principal, policy string) (int64, error) {
	var n int64
	err := s.inTx(ctx, "purging the access trail", func(tx *sqlx.Tx) error {
		head, err := s.lockLog(ctx, tx)
		if err != nil {
			return err
		}
		var below *int64
		if err := tx.GetContext(ctx, &below, s.rebind(`SELECT MIN(log_idx) FROM access_log WHERE at >= ?`), s.timeArg(cutoff)); err != nil {
			return err
		}
		if below == nil {
			below = &head.Size
		}
		var idx []int64
		if err := tx.SelectContext(ctx, &idx, s.rebind(`DELETE FROM access_log WHERE log_idx < ? RETURNING log_idx`), *below); err != nil {
			return fmt.Errorf("removing expired entries: %w", err)
		}
		n = int64(len(idx))
		if n == 0 {
			return nil
		}
		if err := s.withholding(ctx, tx); err != nil {
			return err
		}
		for start := 0; start < len(idx); start += idBatch {
			q, args, err := s.int64In(`UPDATE integrity_event SET body = `+s.emptyBody()+` WHERE kind = 'access' AND idx`, idx[start:min(start+idBatch, len(idx))])
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return fmt.Errorf("withholding purged entries: %w", err)
			}
		}
		e := &AccessEntry{Principal: principal, Action: AccessPurgeAction, Rows: n, Outcome: AccessOK,
			Params: map[string]string{"below": strconv.FormatInt(*below, 10), "cutoff": cutoff.UTC().Format(time.RFC3339), "policy": policy}}
		return s.appendAccessTx(ctx, tx, []*AccessEntry{e})
	})
	return n, err
}

// accessCheck carries what verify learns about access events across chunks.
type accessCheck struct {
	below    int64   // the highest "below" of any trail purge
	withheld []int64 // withheld access events not yet covered by a purge
}

// checkAccessEvents compares the access events among events with their
// rows in access_log, and notes the withheld ones.
func (s *Store) checkAccessEvents(ctx context.Context, events []eventRow, ac *accessCheck, rep *VerifyReport) error {
	logged := map[int64]integrity.Event{}
	var idx []int64
	for _, e := range events {
		if e.Kind != string(integrity.KindAccess) {
			continue
		}
		if len(e.Body) == 0 {
			ac.withheld = append(ac.withheld, e.Idx)
			continue
		}
		ev, err := integrity.DecodeEvent(e.Body)
		if err != nil || ev.Access == nil {
			continue // checkEventRow reported it
		}
		if ev.Access.Action == AccessPurgeAction {
			if b, err := strconv.ParseInt(ev.Access.Params["below"], 10, 64); err == nil {
				ac.below = max(ac.below, b)
			}
		}
		logged[e.Idx] = ev
		idx = append(idx, e.Idx)
	}
	if len(idx) == 0 {
		return nil
	}
	q, args, err := s.int64In(`SELECT `+accessColumns+` FROM access_log WHERE log_idx`, idx)
	if err != nil {
		return err
	}
	var rows []accessRow
	if err := s.db.SelectContext(ctx, &rows, q, args...); err != nil {
		return fmt.Errorf("reading the access trail: %w", err)
	}
	live := map[int64]accessRow{}
	for _, r := range rows {
		live[r.LogIdx] = r
	}
	for _, i := range idx {
		ev := logged[i]
		a := *ev.Access
		r, ok := live[i]
		if !ok {
			// The entry may have been purged since the events were read.
			var gone bool
			if err := s.db.GetContext(ctx, &gone, s.rebind(`SELECT COALESCE(body, '') = '' FROM integrity_event WHERE idx = ?`), i); err == nil && gone {
				continue
			}
			rep.add(Problem{Kind: ProblemRemoved, Event: at(i), Detail: fmt.Sprintf("access entry %d (event %d: %s by %q) is missing from access_log, but the log says it exists: it was removed behind the service's back", a.ID, i, a.Action, a.Principal)})
			continue
		}
		entry, err := r.entry()
		if err != nil || entry.ID != a.ID || entry.Principal != a.Principal || entry.SourceIP != a.SourceIP ||
			entry.ForwardedFor != a.ForwardedFor || entry.Action != a.Action || entry.Rows != a.Rows ||
			entry.Outcome != a.Outcome || !maps.Equal(nonNil(entry.Params), nonNil(a.Params)) || entry.At.Unix() != ev.Time.Unix() {
			rep.add(Problem{Kind: ProblemChanged, Event: at(i), Detail: fmt.Sprintf("access entry %d differs from its event %d: it was changed behind the service's back", r.ID, i)})
		}
	}
	return nil
}

// finishAccess reports withheld access events no trail purge accounts for
// and, on a full verification, trail rows that no access event accounts for.
func (s *Store) finishAccess(ctx context.Context, ac *accessCheck, full bool, rep *VerifyReport) error {
	for _, i := range ac.withheld {
		if i >= ac.below {
			rep.add(Problem{Kind: ProblemEvent, Event: at(i), Detail: fmt.Sprintf("access event %d has no content, and no purge of the access trail withheld it: it was erased behind the service's back", i)})
		}
	}
	if !full {
		return nil
	}
	var maxID int64
	if err := s.db.GetContext(ctx, &maxID, `SELECT COALESCE(MAX(id), 0) FROM access_log`); err != nil {
		return fmt.Errorf("reading the access trail: %w", err)
	}
	for lo := int64(1); lo <= maxID; lo += verifyChunk {
		var bad []struct {
			ID     int64 `db:"id"`
			LogIdx int64 `db:"log_idx"`
		}
		if err := s.db.SelectContext(ctx, &bad, s.rebind(`SELECT a.id, a.log_idx FROM access_log AS a
			LEFT JOIN integrity_event AS e ON e.idx = a.log_idx AND e.kind = 'access'
			WHERE a.id >= ? AND a.id < ? AND e.idx IS NULL`), lo, lo+verifyChunk); err != nil {
			return fmt.Errorf("reading the access trail: %w", err)
		}
		for _, b := range bad {
			rep.add(Problem{Kind: ProblemAdded, Event: at(b.LogIdx), Detail: fmt.Sprintf("access entry %d is in access_log but not in the integrity log (event %d is no access event): it was added behind the service's back", b.ID, b.LogIdx)})
		}
	}
	return nil
}
