package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
	"github.com/tapd-mirror/tapd-mirror/syncer"
)

// The roles table (README "Roles"): every endpoint and console action
// against the four scopes. One list, in the order the requests are sent
// (changes last, delete-all at the very end); each scope gets a fresh
// database. README's table says the same; add a row to both.
//
// who is the least scope allowed: "read" (read, write, auditor, admin),
// "auditor" (auditor, admin), "write" (write, admin) or "admin".
var roles = []struct {
	name, method, path, body string
	console                  bool   // a console page or form, with a signed-in session
	who                      string // the least scope allowed (see above); "any": no token needed
	action                   string // its trail entry; "" a contract request (recorded only when refused)
}{
	{"list", "GET", "/api/v1/activity_log", "", false, "any", ""},
	{"count", "GET", "/api/v1/activity_log/count", "", false, "any", ""},
	{"list with detail", "GET", "/api/v1/activity_log?detail=1", "", false, "read", "list.detail"},
	{"list by ip", "GET", "/api/v1/activity_log?ip=10.0.0.1", "", false, "read", "list.detail"},
	{"count by ip", "GET", "/api/v1/activity_log/count?ip=10.0.0.1", "", false, "read", "count.detail"},
	{"export csv", "GET", "/api/v1/activity_log/export?format=csv", "", false, "read", "export"},
	{"export ndjson", "GET", "/api/v1/activity_log/export?format=ndjson&username=alice", "", false, "read", "export"},
	{"export bundle", "GET", "/api/v1/activity_log/export?format=bundle&username=alice", "", false, "read", "export"},
	{"export full bundle", "GET", "/api/v1/activity_log/export?format=bundle", "", false, "auditor", "export"},
	{"checkpoint", "GET", "/api/v1/integrity/checkpoint", "", false, "any", ""},
	{"checkpoints", "GET", "/api/v1/integrity/checkpoints", "", false, "any", ""},
	{"consistency", "GET", "/api/v1/integrity/consistency?from=1&to=2", "", false, "any", "integrity.consistency"},
	{"proof", "GET", "/api/v1/integrity/proof/{mirrored}", "", false, "read", "integrity.proof"},
	{"integrity status", "GET", "/api/v1/integrity/status", "", false, "read", ""},
	{"sync status", "GET", "/api/v1/sync/status", "", false, "auditor", ""},
	{"sync runs", "GET", "/api/v1/sync/runs", "", false, "auditor", ""},
	{"sync run", "GET", "/api/v1/sync/runs/1", "", false, "auditor", ""},
	{"holds", "GET", "/api/v1/holds", "", false, "auditor", "hold.list"},
	{"forwarding", "GET", "/api/v1/forward", "", false, "auditor", ""},
	{"access trail", "GET", "/api/v1/access", "", false, "auditor", "access.list"},
	{"alerts", "GET", "/api/v1/alerts", "", false, "read", "alerts.list"},
	{"console search", "GET", "/?q=alice", "", true, "read", "console.search"},
	{"console record", "GET", "/record/{mirrored}", "", true, "read", "console.record"},
	{"console timeline", "GET", "/timeline", "", true, "read", "console.timeline"},
	{"console coverage", "GET", "/coverage", "", true, "read", "console.coverage"},
	{"console export", "GET", "/export?format=csv", "", true, "read", "console.export"},
	{"console full bundle", "GET", "/export?format=bundle", "", true, "auditor", "console.export"},
	{"console alerts", "GET", "/alerts", "", true, "read", "console.alerts"},
	{"console access trail", "GET", "/access", "", true, "auditor", "console.access"},
	{"console report", "GET", "/report", "", true, "auditor", "console.report"},
	{"console forwarding", "GET", "/forward", "", true, "auditor", "console.forward"},
	{"console resync", "POST", "/coverage/resync", "workspace=&mode=full", true, "admin", "console.resync"},
	{"console acknowledge", "POST", "/coverage/ack", "workspace=10074561&note=known+outage", true, "admin", "console.ack"},
	{"sync", "POST", "/api/v1/sync", `{"workspace":""}`, false, "admin", "sync.trigger"},
	{"forwarding replay", "POST", "/api/v1/forward/siem/replay?from=0", "", false, "admin", "forward.replay"},
	{"acknowledge gaps", "POST", "/api/v1/sync/gaps/ack", `{"workspace":"10074561","note":"known"}`, false, "admin", "gaps.ack"},
	{"place hold", "POST", "/api/v1/holds", `{"name":"case-1","reason":"audit","filter":{"username":"nobody"}}`, false, "admin", "hold.place"},
	{"release hold", "DELETE", "/api/v1/holds/1", `{"reason":"done"}`, false, "admin", "hold.release"},
	{"create", "POST", "/api/v1/activity_log", `{"platform":"web","action_type":"login","username":"carol","timestamp":1700000000}`, false, "write", ""},
	{"delete local", "DELETE", "/api/v1/activity_log/{local}", "", false, "write", "delete"},
	{"delete mirrored", "DELETE", "/api/v1/activity_log/{mirrored}", "", false, "admin", "delete"},
	{"delete all", "DELETE", "/api/v1/activity_log/all", "", false, "admin", "delete_all"},
}

// allows reports whether scope may do what needs who.
func allows(scope config.Scope, who string) bool {
	return who == "any" || scope.Includes(config.Scope(who))
}

// ackingSyncer is a Syncer whose acknowledgement is the store's own, so
// that it records its trail entry in its transaction as the real one does.
type ackingSyncer struct{ st *storage.Store }

func (a ackingSyncer) Trigger(context.Context, string, bool) (syncer.Triggered, error) {
	return syncer.Triggered{Queued: []string{}}, nil
}

func (a ackingSyncer) Status(context.Context) ([]syncer.WorkspaceStatus, error) { return nil, nil }

func (a ackingSyncer) AcknowledgeGaps(ctx context.Context, ws, note string) ([]storage.Interval, error) {
	return a.st.AcknowledgeGaps(ctx, ws, note)
}

var roleTokens = map[config.Scope]config.Token{
	config.ScopeRead:    {Name: "reader", Token: "roles-read-token-0000000000000000000000", Scope: config.ScopeRead},
	config.ScopeWrite:   {Name: "writer", Token: "roles-write-token-000000000000000000000", Scope: config.ScopeWrite},
	config.ScopeAuditor: {Name: "auditor", Token: "roles-auditor-token-0000000000000000000", Scope: config.ScopeAuditor},
	config.ScopeAdmin:   {Name: "ops", Token: "roles-admin-token-000000000000000000000", Scope: config.ScopeAdmin},
}

// TestRolesTable sends every request of the roles table with a token of
// each scope and checks the answer (allowed, or 403) and that each request
// is one entry of the access trail, with its principal and outcome, and
// one access event of the integrity log (verify --database is clean).
func TestRolesTable(t *testing.T) {
	for _, scope := range []config.Scope{config.ScopeRead, config.ScopeWrite, config.ScopeAuditor, config.ScopeAdmin} {
		t.Run(string(scope), func(t *testing.T) {
			storagetest.EachStore(t, func(t *testing.T, st *storage.Store) {
				checkRoles(t, st, scope)
			})
		})
	}
}

func checkRoles(t *testing.T, st *storage.Store, scope config.Scope) {
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	local, err := st.InsertActivity(ctx, storage.Activity{Platform: "web", ActionType: "login", Username: "alice", Timestamp: at, Source: storage.SourceLocal})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpsertMirrored(ctx, []storage.Activity{{Platform: "tapd", Serial: "10074561", ActionType: "add",
		ActionDetail: "迭代: v1", Username: "alice", Timestamp: at, Source: storage.SourceTAPD, SourceID: "1100000001",
		WorkspaceID: "10074561", Extra: map[string]string{"ip": "10.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	var mirrored int64
	if err := st.DB().Get(&mirrored, `SELECT id FROM activity_log WHERE source_id = '1100000001'`); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateRun(ctx, &storage.SyncRun{Workspace: "10074561", Trigger: "schedule", Outcome: "success", StartedAt: at}); err != nil {
		t.Fatal(err)
	}
	skey, _ := integrity.GenerateKey("roles.test")
	key, _ := integrity.ParseKey(skey)
	if _, _, err := st.SignCheckpoint(ctx, key, time.Now()); err != nil {
		t.Fatal(err)
	}
	var tokens []config.Token
	for _, tok := range roleTokens {
		tokens = append(tokens, tok)
	}
	srv := newAPI(t, api.Options{Store: st, Syncer: ackingSyncer{st}, Tokens: tokens, Location: shanghai, Logger: testLogger(),
		Integrity: api.Integrity{VerifierKey: key.VerifierKey()},
		ForwardReplay: func(ctx context.Context, name string, from int64, since time.Time) (forward.Replay, error) {
			return forward.ReplayFrom(ctx, st, []string{"siem"}, name, from, since)
		}})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	tok := roleTokens[scope]
	browser := newVisitor(t, hs.URL, nil)
	if p := browser.signIn(tok.Token); p.status != http.StatusSeeOther {
		t.Fatalf("signing in as %s: %d %.200s", scope, p.status, p.body)
	}
	client := &http.Client{}

	want := map[string]int{"signin": 1} // action/outcome → entries
	for _, c := range roles {
		path := strings.NewReplacer("{local}", fmt.Sprint(local), "{mirrored}", fmt.Sprint(mirrored)).Replace(c.path)
		var status int
		var body string
		if c.console {
			if c.method == "GET" {
				p := browser.get(path)
				status, body = p.status, p.body
			} else {
				form, _ := url.ParseQuery(c.body)
				form.Set("csrf", browser.csrf("/signin"))
				p := browser.post(path, form)
				status, body = p.status, p.body
			}
		} else {
			req, _ := http.NewRequest(c.method, hs.URL+path, strings.NewReader(c.body))
			req.Header.Set("Authorization", "Bearer "+tok.Token)
			if c.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 300)
			n, _ := resp.Body.Read(b)
			resp.Body.Close()
			status, body = resp.StatusCode, string(b[:n])
		}
		allowed := allows(scope, c.who)
		switch {
		case allowed && (status == 401 || status == 403 || status >= 500 || (c.console && status == http.StatusSeeOther && strings.Contains(body, "signin"))):
			t.Errorf("%s (%s %s) with a %s token: %d, want it allowed: %.200s", c.name, c.method, path, scope, status, body)
		case !allowed && status != 403:
			t.Errorf("%s (%s %s) with a %s token: %d, want 403: %.200s", c.name, c.method, path, scope, status, body)
		}
		switch {
		case !allowed:
			action := c.action
			if action == "" { // a refused contract request is recorded under its own name
				action = map[string]string{"create": "create", "integrity status": "integrity.status", "sync status": "sync.status",
					"sync runs": "sync.runs", "sync run": "sync.run", "forwarding": "forward.status"}[c.name]
			}
			want[action+"/denied"]++
		case c.action != "":
			want[c.action+"/ok"]++
		}
	}
	if err := srv.FlushAccess(ctx); err != nil {
		t.Fatal(err)
	}
	entries, err := st.ListAccess(ctx, storage.AccessFilter{}, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range entries {
		key := e.Action + "/" + e.Outcome
		if e.Action == "signin" {
			key = "signin"
		}
		got[key]++
		if e.Principal != tok.Name || e.SourceIP != "127.0.0.1" {
			t.Errorf("entry %+v: principal or source", e)
		}
	}
	// Rows: both seeded records are alice's, exported through the API and the console.
	for _, e := range entries {
		if e.Outcome == storage.AccessOK && ((e.Action == "export" && e.Params["format"] == "ndjson") || e.Action == "console.export") && e.Rows != 2 {
			t.Errorf("%s exported %d rows, want 2: %+v", e.Action, e.Rows, e)
		}
		if e.Outcome == storage.AccessOK && e.Action == "delete" && e.Rows != 1 {
			t.Errorf("delete changed %d rows: %+v", e.Rows, e)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("trail of a %s token:\n got %v\nwant %v", scope, got, want)
	}
	// Every entry is one access event, and the database verifies.
	head, _ := st.Head(ctx)
	evs, _ := st.ReadEvents(ctx, 0, head.Size)
	accesses := 0
	for _, e := range evs {
		if e.Kind == integrity.KindAccess {
			accesses++
		}
	}
	if accesses != len(entries) {
		t.Errorf("%d access events for %d trail entries", accesses, len(entries))
	}
	rep, err := st.VerifyDatabase(ctx, storage.VerifyOptions{Key: key.VerifierKey()})
	if err != nil || !rep.OK {
		t.Fatalf("verify after the roles: %v %+v", err, rep.Problems)
	}
}

// TestTrailRecordsSignInsAndRefusals: failed sign-ins (console and bearer
// tokens) are entries too; forwarded-for comes from a proxy on this
// machine; contract_reads: all puts the contract's plain reads in.
func TestTrailRecordsSignInsAndRefusals(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, st *storage.Store) {
		ctx := context.Background()
		tok := roleTokens[config.ScopeRead]
		srv := newAPI(t, api.Options{Store: st, Tokens: []config.Token{tok}, Logger: testLogger(), RecordContractReads: true})
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		browser := newVisitor(t, hs.URL, nil)
		if p := browser.signIn("not-a-token"); p.status != http.StatusUnauthorized {
			t.Fatalf("bad sign-in: %d", p.status)
		}
		send := func(path, token string, header ...string) int {
			req, _ := http.NewRequest("GET", hs.URL+path, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			for i := 0; i+1 < len(header); i += 2 {
				req.Header.Set(header[i], header[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := send("/api/v1/activity_log?limit=5", tok.Token, "X-Forwarded-For", "203.0.113.7"); code != 200 {
			t.Fatalf("plain list: %d", code)
		}
		// The sign-in was this address's first failure of 10 allowed; the
		// 10th and later wrong tokens are throttled (429) and not recorded.
		for i := range 11 {
			if code, want := send("/api/v1/integrity/proof/1?size=1", "wrong-token"), map[bool]int{true: 401, false: 429}[i < 9]; code != want {
				t.Fatalf("wrong bearer token %d: %d, want %d", i+1, code, want)
			}
		}
		if err := srv.FlushAccess(ctx); err != nil {
			t.Fatal(err)
		}
		es, err := st.ListAccess(ctx, storage.AccessFilter{}, 100, 0)
		if err != nil || len(es) != 11 {
			t.Fatalf("trail: %d entries %+v %v, want the sign-in, the list and 9 wrong tokens", len(es), es, err)
		}
		if e := es[0]; e.Action != "signin.failed" || e.Outcome != storage.AccessDenied || e.Principal != "" {
			t.Errorf("failed sign-in: %+v", e)
		}
		if e := es[1]; e.Action != "list" || e.Outcome != storage.AccessOK || e.Principal != tok.Name || e.ForwardedFor != "203.0.113.7" {
			t.Errorf("plain list with contract_reads all: %+v", e)
		}
		for _, e := range es[2:] {
			if e.Action != "integrity.proof" || e.Outcome != storage.AccessDenied || e.Params["status"] != "401" || e.Params["size"] != "1" || e.Params["id"] != "1" {
				t.Errorf("wrong bearer token: %+v", e)
			}
		}
		for _, e := range es {
			for k, v := range e.Params {
				if strings.Contains(v, "not-a-token") || strings.Contains(v, "wrong-token") {
					t.Errorf("entry %d keeps a token in %s", e.ID, k)
				}
			}
		}
	})
}

// TestReadmeRolesTableIsTheTested: README's roles table has a row for each
// entry of roles, with the same cells.
func TestReadmeRolesTableIsTheTested(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		cells := strings.Split(line, " | ")
		if len(cells) == 7 && strings.HasPrefix(line, "| ") {
			rows[strings.TrimPrefix(cells[0], "| ")] = cells[2:6]
		}
	}
	for _, c := range roles {
		got, ok := rows[c.name]
		if !ok {
			t.Errorf("README's roles table has no row %q", c.name)
			continue
		}
		for i, scope := range []config.Scope{config.ScopeRead, config.ScopeWrite, config.ScopeAuditor, config.ScopeAdmin} {
			want := "—"
			if allows(scope, c.who) {
				want = "✓"
			}
			if got[i] != want {
				t.Errorf("README: %s for %s is %q, the test says %q", c.name, scope, got[i], want)
			}
		}
	}
}

// TestAccessEndpointPages: GET /api/v1/access pages newest first by
// keyset, filters, and refuses bad input with a message.
func TestAccessEndpointPages(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, st *storage.Store) {
		ctx := context.Background()
		at := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
		for i, who := range []string{"alice", "bob", "alice"} {
			if err := st.AppendAccess(ctx, &storage.AccessEntry{At: at.Add(time.Duration(i) * time.Hour), Principal: who,
				Action: "export", Outcome: storage.AccessOK}); err != nil {
				t.Fatal(err)
			}
		}
		tok := roleTokens[config.ScopeAuditor]
		srv := newAPI(t, api.Options{Store: st, Tokens: []config.Token{tok}, Logger: testLogger()})
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(hs.Close)
		get := func(q string) (int, string) {
			req, _ := http.NewRequest("GET", hs.URL+"/api/v1/access"+q, nil)
			req.Header.Set("Authorization", "Bearer "+tok.Token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		page := func(q string) (ids []int64, next string) {
			code, body := get(q)
			var env struct {
				Data struct {
					Entries []storage.AccessEntry `json:"entries"`
					Next    string                `json:"next_cursor"`
				} `json:"data"`
			}
			if code != 200 || json.Unmarshal([]byte(body), &env) != nil {
				t.Fatalf("GET %s: %d %s", q, code, body)
			}
			for _, e := range env.Data.Entries {
				ids = append(ids, e.ID)
			}
			return ids, env.Data.Next
		}
		first, next := page("?limit=2&principal=&action=export")
		second, last := page("?limit=2&cursor=" + next)
		alice, _ := page("?principal=alice")
		ranged, _ := page(fmt.Sprintf("?from=%d&until=%d", at.Add(30*time.Minute).Unix(), at.Add(90*time.Minute).Unix()))
		switch {
		case fmt.Sprint(first) != "[3 2]" || next != "2" || fmt.Sprint(second) != "[1]" || last != "":
			t.Errorf("pages %v (%q) then %v (%q)", first, next, second, last)
		case fmt.Sprint(alice) != "[3 1]":
			t.Errorf("alice: %v", alice)
		case fmt.Sprint(ranged) != "[2]":
			t.Errorf("from/until: %v", ranged)
		}
		for q, want := range map[string]string{
			"?limit=0":     "parameter limit must be a whole number within 1..1000",
			"?cursor=x":    "parameter cursor must be the positive id",
			"?from=monday": "from",
			"?page=2":      "page",
		} {
			if code, body := get(q); code != 400 || !strings.Contains(body, want) || !strings.Contains(body, `"code":400`) {
				t.Errorf("GET %s: %d %s", q, code, body)
			}
		}
	})
}
