package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// The access trail's recorder (README "For auditors"). guard, and the
// console's pages through Options.Access, open a note for each request;
// handlers add what only they know (rows, the detail they were asked for);
// when the answer is written the note becomes a trail entry — unless a
// change already recorded it in its own transaction (storage.WithAccess).

// accessAction is how a route goes to the trail.
type accessAction struct {
	name string
	// contract: the local contract's plain list and count (and its local
	// writes), and the status reads without record content that monitoring
	// polls (integrity checkpoints and status, sync status and runs,
	// forwarding status), recorded only with access_log.contract_reads: all,
	// unless the request asks for more (detail) or is refused.
	contract bool
}

// accessActions names the action of each API route (the mux pattern).
// Routes not listed (health, metrics, 404s) are not recorded.
var accessActions = map[string]accessAction{
	"GET /api/v1/activity_log":           {"list", true},
	"GET /api/v1/activity_log/count":     {"count", true},
	"POST /api/v1/activity_log":          {"create", true},
	"GET /api/v1/activity_log/export":    {"export", false},
	"DELETE /api/v1/activity_log/all":    {"delete_all", false},
	"DELETE /api/v1/activity_log/{id}":   {"delete", false},
	"POST /api/v1/sync":                  {"sync.trigger", false},
	"GET /api/v1/sync/status":            {"sync.status", true},
	"POST /api/v1/sync/gaps/ack":         {"gaps.ack", false},
	"GET /api/v1/sync/runs":              {"sync.runs", true},
	"GET /api/v1/sync/runs/{id}":         {"sync.run", true},
	"GET /api/v1/integrity/checkpoint":   {"integrity.checkpoint", true},
	"GET /api/v1/integrity/checkpoints":  {"integrity.checkpoints", true},
	"GET /api/v1/integrity/consistency":  {"integrity.consistency", false},
	"GET /api/v1/integrity/proof/{id}":   {"integrity.proof", false},
	"GET /api/v1/integrity/status":       {"integrity.status", true},
	"POST /api/v1/holds":                 {"hold.place", false},
	"GET /api/v1/holds":                  {"hold.list", false},
	"DELETE /api/v1/holds/{id}":          {"hold.release", false},
	"GET /api/v1/forward":                {"forward.status", true},
	"POST /api/v1/forward/{name}/replay": {"forward.replay", false},
	"GET /api/v1/access":                 {"access.list", false},
	"GET /api/v1/alerts":                 {"alerts.list", false},
}

// accessNote is one request's trail entry in the making.
type accessNote struct {
	entry  storage.AccessEntry
	record bool // false: a contract read that stays out of the trail
}

type noteKey struct{}

func noteOf(ctx context.Context) *accessNote {
	n, _ := ctx.Value(noteKey{}).(*accessNote)
	return n
}

// noteRows sets the rows the request returned or changed.
func noteRows(ctx context.Context, rows int64) {
	if n := noteOf(ctx); n != nil {
		n.entry.Rows = rows
	}
}

// noteParam adds a parameter the URL does not show (a body's fields).
func noteParam(ctx context.Context, key, value string) {
	if n := noteOf(ctx); n != nil && value != "" {
		n.entry.Params[key] = clip(value)
	}
}

// noteAction renames the action and puts it in the trail: a contract
// request that asked for more (detail=1, detail filters).
func noteAction(ctx context.Context, action string) {
	if n := noteOf(ctx); n != nil {
		n.entry.Action, n.record = action, true
	}
}

// noteDetail marks a contract request that asked for what only the read
// scope sees: it goes to the trail as "<action>.detail".
func noteDetail(ctx context.Context) {
	if n := noteOf(ctx); n != nil && !strings.HasSuffix(n.entry.Action, ".detail") {
		noteAction(ctx, n.entry.Action+".detail")
	}
}

// noteOutcome sets the outcome when the status alone would not say it (an
// export cut off after its 200).
func noteOutcome(ctx context.Context, outcome string) {
	if n := noteOf(ctx); n != nil {
		n.entry.Outcome = outcome
	}
}

// notePrincipal names who asked, once the request is authenticated.
func notePrincipal(ctx context.Context, principal string) {
	if n := noteOf(ctx); n != nil {
		n.entry.Principal = principal
	}
}

// maxNoteParams bounds the parameters one entry keeps.
const maxNoteParams = 32

// beginAccess opens r's note: who (so far), from where, and the request's
// parameters. The returned request carries it.
func (s *Server) beginAccess(r *http.Request, action string, record bool) (*http.Request, *accessNote) {
	n := &accessNote{record: record, entry: storage.AccessEntry{Action: action, SourceIP: remoteAddr(r),
		ForwardedFor: forwardedFor(r), Params: map[string]string{}}}
	q := r.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys[:min(len(keys), maxNoteParams)] {
		v := clip(strings.Join(q[k], ","))
		if secretParam(k) {
			v = "[redacted]" // a credential sent where none belongs stays out of the trail
		}
		n.entry.Params[clip(k)] = v
	}
	if id := r.PathValue("id"); id != "" {
		n.entry.Params["id"] = clip(id)
	}
	ctx := context.WithValue(r.Context(), noteKey{}, n)
	if !s.trail.off {
		ctx = storage.WithAccess(ctx, &n.entry)
	}
	return r.WithContext(ctx), n
}

// secretParam reports a parameter name that may carry a credential.
func secretParam(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "token") || strings.Contains(k, "secret") || strings.Contains(k, "password") ||
		strings.Contains(k, "key") || strings.Contains(k, "auth")
}

// finishAccess turns the note into a trail entry after the answer (status),
// unless the change already recorded it in its transaction.
func (s *Server) finishAccess(r *http.Request, n *accessNote, status int) {
	e := &n.entry
	if e.ID != 0 { // ids are positive; a log index may be 0
		if status < 400 {
			return // recorded in the change's transaction
		}
		// The transaction that recorded it did not commit after all.
		e.ID, e.LogIndex, e.Outcome = 0, 0, ""
	}
	if e.Action == "" || s.trail.off || (!n.record && !s.trail.contractReads) {
		return // not recorded (a throttled attempt, a contract read)
	}
	if e.Outcome == "" {
		e.Outcome = outcomeOf(status)
	}
	e.Params["status"] = strconv.Itoa(status)
	if e.Principal == "" {
		e.Principal = TokenName(r.Context())
	}
	s.trail.add(e)
}

// outcomeOf is the outcome an HTTP status says.
func outcomeOf(status int) string {
	switch {
	case status < 400:
		return storage.AccessOK
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return storage.AccessDenied // (throttled authentications are not recorded at all)
	case status >= 500:
		return storage.AccessError
	}
	return storage.AccessInvalid
}

// forwardedFor is X-Forwarded-For when the request came through a trusted
// proxy — one on this machine, the same rule the console applies to
// X-Forwarded-Proto — and "" otherwise: a remote client cannot put an
// address of its choosing in the trail.
func forwardedFor(r *http.Request) string {
	ip := net.ParseIP(remoteAddr(r))
	if ip == nil || !ip.IsLoopback() {
		return ""
	}
	return clip(strings.Join(r.Header.Values("X-Forwarded-For"), ", "))
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// Unwrap lets http.ResponseController reach the connection (export
// deadlines, flushes).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recordAccess wraps h (a console page or form) so that each request is a
// trail entry named action.
func (s *Server) recordAccess(action string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r, n := s.beginAccess(r, action, true)
		sw := &statusWriter{ResponseWriter: w}
		defer func() { s.finishAccess(r, n, sw.code()) }()
		h(sw, r)
	}
}

// trailWriter appends read entries after their answers, in the background
// and in batches (at most trailLinger after the answer), so that a read does
// not wait for the trail's commit. A full queue makes add wait, and Close
// writes what is queued. What it can lose: a batch the database still
// refuses after the store's own failover retries (logged at ERROR with its
// size and first action), and, on a crash, what was queued (at most
// trailLinger of answers). Changes record theirs in their own transaction.
type trailWriter struct {
	store         *storage.Store
	log           *slog.Logger
	contractReads bool
	off           bool // the benchmark's baseline: nothing is recorded
	queue         chan *storage.AccessEntry
	flush         chan chan struct{}
	done          chan struct{}
	closeOnce     sync.Once
}

// trailBatch bounds the entries of one transaction; trailLinger is how
// long the first entry of a batch waits for others, so that a busy reader
// costs one transaction per batch rather than one per request.
const (
	trailBatch  = 256
	trailLinger = 100 * time.Millisecond
)

func newTrailWriter(store *storage.Store, log *slog.Logger, contractReads, off bool) *trailWriter {
	w := &trailWriter{store: store, log: log, contractReads: contractReads, off: off,
		queue: make(chan *storage.AccessEntry, 4096), flush: make(chan chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *trailWriter) add(e *storage.AccessEntry) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	select {
	case w.queue <- e:
	case <-w.done:
		w.write([]*storage.AccessEntry{e}) // closed: write it here
	}
}

func (w *trailWriter) run() {
	defer close(w.done)
	var batch []*storage.AccessEntry
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	write := func() {
		for len(batch) > 0 {
			n := min(len(batch), trailBatch)
			w.write(batch[:n])
			batch = batch[n:]
		}
		batch = nil
	}
	drain := func() { // whatever is queued already
		for {
			select {
			case e, ok := <-w.queue:
				if !ok {
					return
				}
				batch = append(batch, e)
			default:
				return
			}
		}
	}
	for {
		select {
		case e, ok := <-w.queue:
			if !ok {
				write()
				return
			}
			if len(batch) == 0 {
				linger.Reset(trailLinger)
			}
			if batch = append(batch, e); len(batch) >= trailBatch {
				linger.Stop()
				write()
			}
		case <-linger.C:
			write()
		case ack := <-w.flush:
			linger.Stop()
			drain()
			write()
			close(ack)
		}
	}
}

func (w *trailWriter) write(batch []*storage.AccessEntry) {
	// Not the request's context: the answer is out, the entry must still be written.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.store.AppendAccess(ctx, batch...); err != nil && !errors.Is(err, context.Canceled) {
		w.log.Error("recording the access trail", "entries", len(batch), "first_action", batch[0].Action, "err", err)
	}
}

// FlushAccess waits until every access answered so far is in the trail.
func (s *Server) FlushAccess(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case s.trail.flush <- ack:
	case <-s.trail.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes the pending trail entries and stops the trail's writer;
// call it after the HTTP server has shut down.
func (s *Server) Close() {
	s.trail.closeOnce.Do(func() { close(s.trail.queue) })
	<-s.trail.done
}

// The access trail endpoint: auditors and admins.
var readAccess = rule{scope: config.ScopeAuditor, what: "reading the access trail"}

// maxAccessPage bounds one page of GET /api/v1/access.
const maxAccessPage = 1000

// listAccess answers GET /api/v1/access: newest first, keyset paged by
// cursor (the last id of the previous page), filtered by principal,
// action and from/until (Unix seconds).
func (s *Server) listAccess(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "principal", "action", "from", "until", "limit", "cursor")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f := storage.AccessFilter{Principal: q.str("principal"), Action: q.str("action"), Newest: true}
	if f.From, err = q.unix("from"); err != nil {
		s.fail(w, r, err)
		return
	}
	if f.To, err = q.unix("until"); err != nil {
		s.fail(w, r, err)
		return
	}
	limit, after := 100, int64(0)
	if v := q.str("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxAccessPage {
			s.fail(w, r, errorf(http.StatusBadRequest, "parameter limit must be a whole number within 1..%d, got %q", maxAccessPage, clip(v)))
			return
		}
	}
	if v := q.str("cursor"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after <= 0 {
			s.fail(w, r, errorf(http.StatusBadRequest, "parameter cursor must be the positive id of the last entry of the previous page, got %q", clip(v)))
			return
		}
	}
	entries, err := s.store.ListAccess(r.Context(), f, limit, after)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	noteRows(r.Context(), int64(len(entries)))
	next := ""
	if len(entries) == limit {
		next = strconv.FormatInt(entries[len(entries)-1].ID, 10)
	}
	s.ok(w, map[string]any{"entries": entries, "next_cursor": next})
}
