package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

func signingKey(t *testing.T) *integrity.Key {
	t.Helper()
	skey, err := integrity.GenerateKey("mirror.test")
	if err != nil {
		t.Fatal(err)
	}
	k, err := integrity.ParseKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.env.Data, &v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	return v
}

func TestIntegrityEndpointsProveWhatTheyServe(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		key := signingKey(t)
		c := serve(t, api.Options{Store: s, Tokens: scopedTokens(), Integrity: api.Integrity{VerifierKey: key.VerifierKey()}})

		if r := c.send("GET", "/api/v1/integrity/checkpoint", ""); r.status != 503 {
			t.Fatalf("checkpoint before any: %d %s", r.status, r.body)
		}
		tapdID, localID := seedBoth(t, s)
		cp, _, err := s.SignCheckpoint(ctx, key, time.Now())
		if err != nil {
			t.Fatal(err)
		}

		// The latest checkpoint needs no token, like the contract's list.
		r := c.send("GET", "/api/v1/integrity/checkpoint", "")
		got := decode[struct {
			Checkpoint struct {
				TreeSize int64  `json:"tree_size"`
				Signed   string `json:"signed"`
			} `json:"checkpoint"`
			Key string `json:"key"`
		}](t, r)
		opened, err := integrity.OpenCheckpoint([]byte(got.Checkpoint.Signed), got.Key)
		if r.status != 200 || err != nil || opened.Size != 2 || got.Key != key.VerifierKey() {
			t.Fatalf("checkpoint: %d %s (%v)", r.status, r.body, err)
		}
		if list := decode[[]map[string]any](t, c.send("GET", "/api/v1/integrity/checkpoints?since=0", "")); len(list) != 1 {
			t.Fatalf("checkpoints since 0: %v", list)
		}
		if list := decode[[]map[string]any](t, c.send("GET", "/api/v1/integrity/checkpoints?since=2", "")); len(list) != 0 {
			t.Fatalf("checkpoints since 2: %v", list)
		}

		// A record's proof leads to the signed root; it holds the record, so it needs a read token.
		refused(t, s, c, 401, "needs a token of scope read", "GET", "/api/v1/integrity/proof/1", "")
		r = c.send("GET", "/api/v1/integrity/proof/"+itoa(localID), "", bearer(readTok)...)
		proof := decode[struct {
			TreeSize int64     `json:"tree_size"`
			Root     tlog.Hash `json:"root"`
			Events   []struct {
				Index    int64            `json:"index"`
				Kind     string           `json:"kind"`
				LeafHash tlog.Hash        `json:"leaf_hash"`
				Encoding []byte           `json:"encoding"`
				Proof    tlog.RecordProof `json:"proof"`
			} `json:"events"`
		}](t, r)
		if r.status != 200 || proof.TreeSize != 2 || proof.Root != cp.Root || len(proof.Events) != 1 {
			t.Fatalf("proof: %d %s", r.status, r.body)
		}
		e := proof.Events[0]
		ev, err := integrity.DecodeEvent(e.Encoding)
		if integrity.LeafHash(e.Encoding) != e.LeafHash || err != nil || ev.Record.ID != localID ||
			integrity.CheckInclusion(e.Proof, cp.Size, cp.Root, e.Index, e.LeafHash) != nil {
			t.Fatalf("the proof of record %d does not check: %+v", localID, e)
		}
		refused(t, s, c, 404, "logged record 999 not found", "GET", "/api/v1/integrity/proof/999", "", bearer(readTok)...)
		// (Reads are access events too, so the log has grown past the seed.)
		refused(t, s, c, 400, "parameter size is 9999, but the log has", "GET", "/api/v1/integrity/proof/1?size=9999", "", bearer(readTok)...)

		// Holds: admin only; a held record cannot be deleted, one by one or all at once.
		hold := `{"name":"case-9","reason":"subpoena","filter":{"serial":"10074561"}}`
		refused(t, s, c, 403, "legal holds needs a token of scope admin", "POST", "/api/v1/holds", hold, append(bearer(writeTok), jsonType...)...)
		refused(t, s, c, 400, "name is required", "POST", "/api/v1/holds", `{"reason":"x"}`, append(bearer(adminTok), jsonType...)...)
		refused(t, s, c, 400, "unknown field", "POST", "/api/v1/holds", `{"name":"a","reason":"b","filter":{"ip":"1"}}`, append(bearer(adminTok), jsonType...)...)
		r = c.send("POST", "/api/v1/holds", hold, append(bearer(adminTok), jsonType...)...)
		placed := decode[struct {
			ID        int64  `json:"id"`
			Active    bool   `json:"active"`
			CreatedBy string `json:"created_by"`
		}](t, r)
		if r.status != 200 || !placed.Active || placed.CreatedBy != "ops" {
			t.Fatalf("placing a hold: %d %s", r.status, r.body)
		}
		refused(t, s, c, 403, `record `+itoa(tapdID)+` is under legal hold "case-9"`, "DELETE", "/api/v1/activity_log/"+itoa(tapdID), "", bearer(adminTok)...)
		refused(t, s, c, 403, `legal hold "case-9"`, "DELETE", "/api/v1/activity_log/all", "", bearer(adminTok)...)
		if list := decode[[]map[string]any](t, c.send("GET", "/api/v1/holds", "", bearer(adminTok)...)); len(list) != 1 || list[0]["name"] != "case-9" {
			t.Fatalf("holds: %v", list)
		}
		if r := c.send("DELETE", "/api/v1/holds/"+itoa(placed.ID), `{"reason":"dismissed"}`, append(bearer(adminTok), jsonType...)...); r.status != 200 {
			t.Fatalf("release: %d %s", r.status, r.body)
		}
		refused(t, s, c, 409, "already released", "DELETE", "/api/v1/holds/"+itoa(placed.ID), "", bearer(adminTok)...)
		refused(t, s, c, 404, "legal hold 77 not found", "DELETE", "/api/v1/holds/77", "", bearer(adminTok)...)
		if r := c.send("DELETE", "/api/v1/activity_log/"+itoa(tapdID), "", bearer(adminTok)...); r.status != 200 {
			t.Fatalf("delete after release: %d %s", r.status, r.body)
		}
		head, _ := s.Head(ctx)
		all, _ := s.ReadEvents(ctx, 2, head.Size)
		var evs []storage.LoggedEvent // the changes; the access trail aside
		for _, e := range all {
			if e.Kind != integrity.KindAccess {
				evs = append(evs, e)
			}
		}
		if len(evs) != 3 || evs[0].Kind != "hold" || evs[1].Kind != "release" || evs[1].Event.Hold.Reason != "dismissed" ||
			evs[2].Kind != "delete" || evs[2].Event.Token != "ops" {
			t.Fatalf("events after the seed: %+v", evs)
		}

		// Consistency between the first checkpoint and a later one.
		later, _, err := s.SignCheckpoint(ctx, key, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		r = c.send("GET", "/api/v1/integrity/consistency?from=2", "")
		cons := decode[struct {
			From, To       int64
			FromRoot       tlog.Hash `json:"from_root"`
			ToRoot         tlog.Hash `json:"to_root"`
			Proof          tlog.TreeProof
			FromCheckpoint *string `json:"from_checkpoint"`
		}](t, r)
		if r.status != 200 || cons.To != later.Size || cons.FromCheckpoint == nil || cons.FromRoot != cp.Root || cons.ToRoot != later.Root ||
			integrity.CheckConsistency(cons.Proof, later.Size, later.Root, 2, cp.Root) != nil {
			t.Fatalf("consistency: %d %s", r.status, r.body)
		}
		refused(t, s, c, 400, "parameter from is required", "GET", "/api/v1/integrity/consistency", "")
		refused(t, s, c, 400, "must not be above", "GET", "/api/v1/integrity/consistency?from=4&to=3", "")

		// Bundles: a filtered one needs read, like every export; a full one,
		// which holds the access trail, the auditor scope; both verify offline.
		refused(t, s, c, 401, "export needs a token of scope read", "GET", "/api/v1/activity_log/export?format=bundle", "")
		refused(t, s, c, 403, "needs a token of scope auditor or admin", "GET", "/api/v1/activity_log/export?format=bundle", "", bearer(readTok)...)
		full := c.send("GET", "/api/v1/activity_log/export?format=bundle", "", bearer(adminTok)...)
		sum, err := integrity.Verify(strings.NewReader(full.body), key.VerifierKey(), nil)
		if full.status != 200 || full.header.Get("Content-Type") != "application/x-tar" || err != nil || sum.Events != later.Size || sum.Deletions != 1 {
			t.Fatalf("full bundle: %d %v %+v", full.status, err, sum)
		}
		filtered := c.send("GET", "/api/v1/activity_log/export?format=bundle&source=local", "", bearer(readTok)...)
		sum, err = integrity.Verify(strings.NewReader(filtered.body), key.VerifierKey(), nil)
		if err != nil || !sum.Filtered || sum.Records != 1 || sum.Filter != "source=local" {
			t.Fatalf("filtered bundle: %v %+v", err, sum)
		}

		if st := decode[map[string]any](t, c.send("GET", "/api/v1/integrity/status", "", bearer(readTok)...)); st["ok"] != nil || st["tree_size"].(float64) < float64(later.Size) { // the trail grows it past the checkpoint
			t.Fatalf("status without a verifier: %v", st)
		}

		// A row written with plain SQL has no event: changing it through the API is refused, not laundered.
		var forged int64
		if err := s.DB().QueryRowx(s.DB().Rebind(`INSERT INTO activity_log (platform, action_type, timestamp, source, ingested_at)
			VALUES ('x', 'y', ?, 'local', ?) RETURNING id`), timeArg(s), timeArg(s)).Scan(&forged); err != nil {
			t.Fatal(err)
		}
		refused(t, s, c, 409, "not in the integrity log", "DELETE", "/api/v1/activity_log/"+itoa(forged), "", bearer(adminTok)...)
	})
}

func TestBundleNeedsAKeyAndIntegrityMetrics(t *testing.T) {
	s := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	ok := false
	rep := storage.VerifyReport{OK: false, Count: 2, Finished: time.Unix(1767225600, 0)}
	m := api.NewMetrics(nil)
	m.RegisterIntegrity(s, func() api.IntegrityStatus { return api.IntegrityStatus{OK: &ok, Last: &rep, LastFull: &rep} }, quiet)
	c := serve(t, api.Options{Store: s, Metrics: m})
	refused(t, s, c, 503, "this server has none configured", "GET", "/api/v1/activity_log/export?format=bundle&source=local", "")
	resp, err := http.Get(c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{"tapdmirror_integrity_ok 0", "tapdmirror_integrity_problems 2",
		"tapdmirror_integrity_last_full_verification_timestamp_seconds 1.7672256e+09"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
	st := decode[api.IntegrityStatus](t, c.send("GET", "/api/v1/integrity/status", ""))
	if st.OK != nil {
		t.Fatalf("a server without a status func reports ok=%v", *st.OK)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// timeArg is now as the store's dialect keeps times.
func timeArg(s *storage.Store) any {
	if s.Dialect() == "sqlite" {
		return time.Now().Unix()
	}
	return time.Now()
}
