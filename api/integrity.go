package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// Integrity is what the integrity endpoints need beyond the store.
type Integrity struct {
	// VerifierKey is the log's public key. Without it bundles cannot be
	// made (503); the other endpoints work.
	VerifierKey string
	// Status reports the background verification; nil: never verified here.
	Status func() IntegrityStatus
}

// IntegrityStatus is the outcome of the background verification.
type IntegrityStatus struct {
	// OK is false from a verification that found a problem until a full one
	// finds none; nil before the first verification.
	OK       *bool                 `json:"ok"`
	Last     *storage.VerifyReport `json:"last_verification"`
	LastFull *storage.VerifyReport `json:"last_full_verification"`
}

// What the integrity endpoints need; see README "Integrity".
var (
	readIntegrity = rule{scope: config.ScopeRead, open: true, what: "integrity proofs and status"}
	adminHolds    = rule{scope: config.ScopeAdmin, what: "legal holds"}
	auditHolds    = rule{scope: config.ScopeAuditor, what: "listing legal holds"}
)

// integrityRoutes registers the integrity and legal hold endpoints.
// Checkpoints and consistency proofs hold no record content: they are as
// open as the contract's plain list.
func (s *Server) integrityRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/integrity/checkpoint", s.guard(s.plainRead, s.latestCheckpoint))
	mux.HandleFunc("GET /api/v1/integrity/checkpoints", s.guard(s.plainRead, s.listCheckpoints))
	mux.HandleFunc("GET /api/v1/integrity/consistency", s.guard(s.plainRead, s.consistency))
	mux.HandleFunc("GET /api/v1/integrity/proof/{id}", s.guard(readIntegrity, s.proof))
	mux.HandleFunc("GET /api/v1/integrity/status", s.guard(readIntegrity, s.integrityStatus))
	mux.HandleFunc("POST /api/v1/holds", s.guard(adminHolds, s.createHold))
	mux.HandleFunc("GET /api/v1/holds", s.guard(auditHolds, s.listHolds))
	mux.HandleFunc("DELETE /api/v1/holds/{id}", s.guard(adminHolds, s.releaseHold))
	mux.HandleFunc("/api/v1/holds", s.methodNotAllowed("GET, POST"))
	mux.HandleFunc("/api/v1/holds/{id}", s.methodNotAllowed("DELETE"))
}

type checkpointJSON struct {
	TreeSize int64     `json:"tree_size"`
	Root     tlog.Hash `json:"root"`
	Time     int64     `json:"time"`
	Signed   string    `json:"signed"` // the signed note: verify it with the key
}

func toCheckpointJSON(c storage.SignedCheckpoint) checkpointJSON {
	return checkpointJSON{TreeSize: c.Size, Root: c.Root, Time: c.SignedAt.Unix(), Signed: string(c.Signed)}
}

var errNoCheckpoint = &Error{Status: http.StatusServiceUnavailable,
	Message: "no checkpoint has been signed yet: the server signs one within integrity.checkpoint_interval of a change",
	Header:  http.Header{"Retry-After": {"60"}}}

func (s *Server) latestCheckpoint(w http.ResponseWriter, r *http.Request) {
	if _, err := parseQuery(r); err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.store.LatestCheckpoint(r.Context())
	if errors.Is(err, storage.ErrNotFound) {
		err = errNoCheckpoint
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.ok(w, map[string]any{"checkpoint": toCheckpointJSON(c), "key": s.integrity.VerifierKey})
}

func (s *Server) listCheckpoints(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "since", "limit")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	since, err := q.int("since", 0, 0, maxInt)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit, err := q.int("limit", 100, 1, 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	cps, err := s.store.Checkpoints(r.Context(), since, int(limit))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]checkpointJSON, len(cps))
	for i, c := range cps {
		out[i] = toCheckpointJSON(c)
	}
	s.ok(w, out)
}

// sizeParam reads a tree size within 1..the log's size; def when absent.
func (s *Server) sizeParam(ctx context.Context, q query, name string, def int64) (int64, error) {
	head, err := s.store.Head(ctx)
	if err != nil {
		return 0, err
	}
	if head.Size == 0 {
		return 0, errorf(http.StatusConflict, "the integrity log is empty")
	}
	n, err := q.int(name, def, 1, maxInt)
	if err != nil {
		return 0, err
	}
	if n > head.Size {
		return 0, errorf(http.StatusBadRequest, "parameter %s is %d, but the log has %d events", name, n, head.Size)
	}
	return n, nil
}

// latestSize is the latest checkpoint's tree size, the default tree for proofs.
func (s *Server) latestSize(ctx context.Context) (int64, error) {
	c, err := s.store.LatestCheckpoint(ctx)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, errNoCheckpoint
	}
	return c.Size, err
}

// signedAt is the signed checkpoint of that size, or nil when none was signed.
func (s *Server) signedAt(ctx context.Context, size int64) (*string, error) {
	c, err := s.store.CheckpointAt(ctx, size)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	text := string(c.Signed)
	return &text, nil
}

type proofEventJSON struct {
	Index    int64            `json:"index"`
	Kind     string           `json:"kind"`
	LeafHash tlog.Hash        `json:"leaf_hash"`
	Encoding []byte           `json:"encoding"` // canonical encoding, base64; null when purged
	Proof    tlog.RecordProof `json:"proof"`
}

// proof proves a record's events in the tree of size ?size= (default: the
// latest checkpoint's).
func (s *Server) proof(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q, err := parseQuery(r, "size")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	def := int64(0)
	if _, set := q.v["size"]; !set {
		if def, err = s.latestSize(ctx); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	size, err := s.sizeParam(ctx, q, "size", def)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	proofs, err := s.store.RecordProofs(ctx, id, size)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	root, err := s.store.TreeRoot(ctx, size)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	signed, err := s.signedAt(ctx, size)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	events := make([]proofEventJSON, len(proofs))
	for i, p := range proofs {
		events[i] = proofEventJSON{Index: p.Index, Kind: p.Kind, LeafHash: p.Leaf, Encoding: p.Encoding, Proof: p.Path}
	}
	s.ok(w, map[string]any{"record_id": id, "tree_size": size, "root": root, "checkpoint": signed,
		"key": s.integrity.VerifierKey, "events": events})
}

// consistency proves that the tree of size ?to= (default: the latest
// checkpoint's) extends the tree of size ?from=.
func (s *Server) consistency(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r, "from", "to")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if _, set := q.v["from"]; !set {
		s.fail(w, r, errorf(http.StatusBadRequest, "parameter from is required: the tree size of the checkpoint you hold"))
		return
	}
	ctx := r.Context()
	def := int64(0)
	if _, set := q.v["to"]; !set {
		if def, err = s.latestSize(ctx); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	to, err := s.sizeParam(ctx, q, "to", def)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	from, err := q.int("from", 0, 0, maxInt)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if from > to {
		s.fail(w, r, errorf(http.StatusBadRequest, "from (%d) must not be above to (%d)", from, to))
		return
	}
	proof, fromRoot, toRoot, err := s.store.Consistency(ctx, from, to)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	fromSigned, err := s.signedAt(ctx, from)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	toSigned, err := s.signedAt(ctx, to)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.ok(w, map[string]any{"from": from, "to": to, "from_root": fromRoot, "to_root": toRoot, "proof": proof,
		"from_checkpoint": fromSigned, "to_checkpoint": toSigned})
}

func (s *Server) integrityStatus(w http.ResponseWriter, r *http.Request) {
	if _, err := parseQuery(r); err != nil {
		s.fail(w, r, err)
		return
	}
	head, err := s.store.Head(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var st IntegrityStatus
	if s.integrity.Status != nil {
		st = s.integrity.Status()
	}
	out := map[string]any{"ok": st.OK, "tree_size": head.Size, "root": head.Root, "key": s.integrity.VerifierKey,
		"checkpoint": nil, "last_verification": st.Last, "last_full_verification": st.LastFull}
	switch c, err := s.store.LatestCheckpoint(r.Context()); {
	case err == nil:
		out["checkpoint"] = toCheckpointJSON(c)
	case !errors.Is(err, storage.ErrNotFound):
		s.fail(w, r, err)
		return
	}
	s.ok(w, out)
}

// countingWriter tells whether anything reached the client.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// exportBundle streams a bundle of the log up to the latest checkpoint:
// every event, or with any filter the matching records' events with their
// inclusion proofs. The caller holds an export slot.
func (s *Server) exportBundle(w http.ResponseWriter, r *http.Request, q query, f storage.Filter) {
	if s.integrity.VerifierKey == "" {
		s.fail(w, r, errorf(http.StatusServiceUnavailable, "bundles need the log's key, and this server has none configured"))
		return
	}
	ctx := r.Context()
	cp, err := s.store.LatestCheckpoint(ctx)
	if errors.Is(err, storage.ErrNotFound) {
		err = errNoCheckpoint
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req := storage.BundleRequest{Checkpoint: cp, Key: s.integrity.VerifierKey}
	filter := q.v
	filter.Del("format")
	if slices.ContainsFunc(filterParams, filter.Has) {
		req.Filter, req.Describe = &f, filter.Encode()
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="tapd-mirror-%d.bundle.tar"`, cp.Size))
	sent := &countingWriter{w: w}
	buf := bufio.NewWriterSize(sent, 64<<10)
	n, err := s.store.WriteBundle(ctx, buf, req)
	if err == nil {
		err = buf.Flush()
	}
	noteRows(ctx, n)
	if err != nil {
		if sent.n == 0 { // nothing sent yet: an honest error answer is still possible
			w.Header().Del("Content-Disposition")
			s.fail(w, r, err)
			return
		}
		s.log.ErrorContext(ctx, "bundle export aborted", "events", n, "err", err)
		noteOutcome(ctx, storage.AccessError)
		panic(http.ErrAbortHandler)
	}
	s.log.InfoContext(ctx, "bundle exported", "events", n, "tree_size", cp.Size, "filtered", req.Filter != nil)
}

// holdRequest is the body of POST /api/v1/holds.
type holdRequest struct {
	Name   string             `json:"name"`
	Reason string             `json:"reason"`
	Filter storage.HoldFilter `json:"filter"`
}

type holdJSON struct {
	ID            int64              `json:"id"`
	Name          string             `json:"name"`
	Reason        string             `json:"reason"`
	Filter        storage.HoldFilter `json:"filter"`
	Active        bool               `json:"active"`
	CreatedBy     string             `json:"created_by"`
	CreatedAt     int64              `json:"created_at"`
	ReleasedAt    *int64             `json:"released_at"`
	ReleasedBy    string             `json:"released_by"`
	ReleaseReason string             `json:"release_reason"`
}

func toHoldJSON(h storage.Hold) holdJSON {
	out := holdJSON{ID: h.ID, Name: h.Name, Reason: h.Reason, Filter: h.Filter, Active: h.Active(),
		CreatedBy: h.CreatedBy, CreatedAt: h.CreatedAt.Unix(), ReleasedBy: h.ReleasedBy, ReleaseReason: h.ReleaseReason}
	if !h.Active() {
		t := h.ReleasedAt.Unix()
		out.ReleasedAt = &t
	}
	return out
}

func (s *Server) createHold(w http.ResponseWriter, r *http.Request) {
	if _, err := parseQuery(r); err != nil {
		s.fail(w, r, err)
		return
	}
	var req holdRequest
	if err := decodeBody(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	var problems []string
	for _, f := range []struct{ name, v string }{{"name", req.Name}, {"reason", req.Reason}} {
		switch {
		case strings.TrimSpace(f.v) == "":
			problems = append(problems, f.name+" is required")
		case len([]rune(f.v)) > maxShortField:
			problems = append(problems, fmt.Sprintf("%s is longer than %d characters", f.name, maxShortField))
		}
	}
	for _, t := range []struct {
		name string
		v    int64
	}{{"filter.since", req.Filter.Since}, {"filter.until", req.Filter.Until}} {
		if t.v != 0 && !validUnix(t.v) {
			problems = append(problems, fmt.Sprintf("%s must be Unix seconds from %d to %d", t.name, minUnix, maxUnix))
		}
	}
	if req.Filter.Since != 0 && req.Filter.Until != 0 && req.Filter.Since >= req.Filter.Until {
		problems = append(problems, "filter.since must be before filter.until")
	}
	if len(problems) > 0 {
		s.fail(w, r, errorf(http.StatusBadRequest, "invalid legal hold: %s", strings.Join(problems, "; ")))
		return
	}
	noteParam(r.Context(), "name", req.Name)
	noteParam(r.Context(), "reason", req.Reason)
	noteParam(r.Context(), "filter", req.Filter.Text())
	h, err := s.store.CreateHold(r.Context(), req.Name, req.Reason, req.Filter, TokenName(r.Context()))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.WarnContext(r.Context(), "legal hold placed", slog.Int64("hold", h.ID), slog.String("name", h.Name),
		slog.String("token", tokenName(r.Context())))
	s.ok(w, toHoldJSON(h))
}

func (s *Server) listHolds(w http.ResponseWriter, r *http.Request) {
	if _, err := parseQuery(r); err != nil {
		s.fail(w, r, err)
		return
	}
	holds, err := s.store.ListHolds(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]holdJSON, len(holds))
	for i, h := range holds {
		out[i] = toHoldJSON(h)
	}
	s.ok(w, out)
}

type releaseRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) releaseHold(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := parseQuery(r); err != nil {
		s.fail(w, r, err)
		return
	}
	var req releaseRequest
	if err := decodeOptionalBody(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if len([]rune(req.Reason)) > maxShortField {
		s.fail(w, r, errorf(http.StatusBadRequest, "reason is longer than %d characters", maxShortField))
		return
	}
	noteParam(r.Context(), "reason", req.Reason)
	h, err := s.store.ReleaseHold(r.Context(), id, TokenName(r.Context()), req.Reason)
	if errors.Is(err, storage.ErrReleased) {
		err = errorf(http.StatusConflict, "legal hold %d was already released", id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.WarnContext(r.Context(), "legal hold released", slog.Int64("hold", h.ID), slog.String("name", h.Name),
		slog.String("token", tokenName(r.Context())))
	s.ok(w, toHoldJSON(h))
}

// Integrity metrics, registered by RegisterIntegrity.
var (
	descIntegrityOK = prometheus.NewDesc("tapdmirror_integrity_ok",
		"1 when the last verification of the database against its integrity log found nothing wrong, 0 when it found a problem (absent before the first).", nil, nil)
	descIntegrityProblems = prometheus.NewDesc("tapdmirror_integrity_problems",
		"Problems the last verification found (see GET /api/v1/integrity/status).", nil, nil)
	descIntegrityVerified = prometheus.NewDesc("tapdmirror_integrity_last_full_verification_timestamp_seconds",
		"When the last full verification of the database finished.", nil, nil)
	descCheckpointSize = prometheus.NewDesc("tapdmirror_integrity_checkpoint_tree_size",
		"Events covered by the latest signed checkpoint.", nil, nil)
	descCheckpointTime = prometheus.NewDesc("tapdmirror_integrity_checkpoint_timestamp_seconds",
		"When the latest checkpoint was signed.", nil, nil)
)

type integrityCollector struct {
	store  *storage.Store
	status func() IntegrityStatus
	log    *slog.Logger
}

func (c *integrityCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descIntegrityOK, descIntegrityProblems, descIntegrityVerified, descCheckpointSize, descCheckpointTime} {
		ch <- d
	}
}

func (c *integrityCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	st := c.status()
	if st.OK != nil {
		gauge(descIntegrityOK, map[bool]float64{true: 1, false: 0}[*st.OK])
	}
	if st.Last != nil {
		gauge(descIntegrityProblems, float64(st.Last.Count))
	}
	if st.LastFull != nil {
		gauge(descIntegrityVerified, float64(st.LastFull.Finished.Unix()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch cp, err := c.store.LatestCheckpoint(ctx); {
	case err == nil:
		gauge(descCheckpointSize, float64(cp.Size))
		gauge(descCheckpointTime, float64(cp.SignedAt.Unix()))
	case !errors.Is(err, storage.ErrNotFound) && c.log != nil:
		c.log.Warn("metrics: reading the latest checkpoint", "err", err)
	}
}

// RegisterIntegrity adds the integrity gauges, read at scrape time, and
// returns the counter of failed checkpoint publications.
func (m *Metrics) RegisterIntegrity(st *storage.Store, status func() IntegrityStatus, log *slog.Logger) prometheus.Counter {
	m.reg.MustRegister(&integrityCollector{store: st, status: status, log: log})
	failures := prometheus.NewCounter(prometheus.CounterOpts{Name: "tapdmirror_integrity_publish_failures_total",
		Help: "Checkpoints that could not be published to integrity.publish_file or publish_url (the next checkpoint supersedes it)."})
	m.reg.MustRegister(failures)
	return failures
}
