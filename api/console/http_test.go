package console_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/integrity"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/storage/storagetest"
)

// visitor is a browser-like HTTP client: a cookie jar, no redirects
// followed, so each answer can be checked.
type visitor struct {
	t      *testing.T
	base   string
	client *http.Client
	header http.Header // sent with every request
}

func newVisitor(t *testing.T, base string, client *http.Client) *visitor {
	jar, _ := cookiejar.New(nil)
	if client == nil {
		client = &http.Client{}
	}
	c := *client
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &visitor{t: t, base: base, client: &c, header: http.Header{}}
}

type page struct {
	status int
	header http.Header
	body   string
}

func (v *visitor) do(method, path string, form url.Values, header ...string) page {
	v.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, v.base+path, body)
	if err != nil {
		v.t.Fatal(err)
	}
	for k, vals := range v.header {
		req.Header[k] = vals
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := v.client.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (v *visitor) get(path string, header ...string) page {
	v.t.Helper()
	return v.do("GET", path, nil, header...)
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token of the forms on a page.
func (v *visitor) csrf(path string) string {
	v.t.Helper()
	p := v.get(path)
	m := csrfInput.FindStringSubmatch(p.body)
	if m == nil {
		v.t.Fatalf("no CSRF token on %s (%d): %.300s", path, p.status, p.body)
	}
	return m[1]
}

func (v *visitor) post(path string, form url.Values, header ...string) page {
	v.t.Helper()
	return v.do("POST", path, form, header...)
}

func (v *visitor) signIn(token string) page {
	v.t.Helper()
	return v.post("/signin", url.Values{"csrf": {v.csrf("/signin")}, "token": {token}, "next": {"/"}})
}

// cookieFrom finds a Set-Cookie by name.
func cookieFrom(p page, name string) *http.Cookie {
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func consoleServer(t *testing.T, st *storage.Store, tokens []config.Token) string {
	t.Helper()
	srv := httptest.NewServer(newAPI(t, api.Options{Store: st, Tokens: tokens, Location: shanghai, Logger: testLogger()}).Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// hostileNext are sign-in targets that a browser would take (or could be
// led to take) to another host; each must fall back to the console home.
var hostileNext = []string{
	"//evil.example/", "///evil.example/", `/\evil.example/`, `/./\evil.example/`, `/../\evil.example/`,
	`/x/../\evil.example/`, "/%5Cevil.example/", "/%5cevil.example/", "/./%5Cevil.example/", "/%255Cevil.example/",
	"/%25255cevil.example/", "/x/%2E%2E/%5Cevil.example", "/\t/evil.example/", "\t/evil.example/", "/%09/evil.example/",
	"/\r\nLocation: //evil.example", "/%0d%0a/evil.example", "/ /evil.example", "/\uff0fevil.example/",
	"/\u2215evil.example/", "/\u2044evil.example/", "/\uff3cevil.example/", "/%EF%BC%8Fevil.example/",
	"https://evil.example/", "http:/evil.example", "javascript:alert(1)", `\/evil.example`, "", "evil.example",
}

var nextInput = regexp.MustCompile(`name="next" value="([^"]*)"`)

// TestSignInRedirectStaysOnSite: the target after sign-in (POST's
// Location) and the one the form carries (GET /signin?next=) are the
// cleaned, re-encoded local path, or the console home for anything a
// browser could read as another host.
func TestSignInRedirectStaysOnSite(t *testing.T) {
	st := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	v := newVisitor(t, consoleServer(t, st, scopedTokens()), nil)
	want := map[string]string{
		"/?user=a":              "/?user=a",
		"/coverage":             "/coverage",
		"/record/42":            "/record/42",
		"/timeline/../coverage": "/coverage",
		"/%2F/evil.example":     "/evil.example", // cleaned: a path on this site
		"/coverage/":            "/coverage/",
		"/?q=%E5%BC%A0":         "/?q=%E5%BC%A0",
		"/?q=a%5Cb&user=x":      "/?q=a%5Cb&user=x", // a backslash in the query stays encoded
		"/?q=a\\b":              "/?q=a%5Cb",
		"/?user=a#frag":         "/?user=a",
	}
	for _, next := range hostileNext {
		want[next] = "/"
	}
	for next, target := range want {
		form := v.get("/signin?next=" + url.QueryEscape(next))
		m := nextInput.FindStringSubmatch(form.body)
		if m == nil || html.UnescapeString(m[1]) != target {
			t.Errorf("GET /signin?next=%q: the form's next = %q, want %q", next, m, target)
		}
		p := v.post("/signin", url.Values{"csrf": {v.csrf("/signin")}, "token": {readTok}, "next": {next}})
		if loc := p.header.Get("Location"); p.status != http.StatusSeeOther || loc != target {
			t.Errorf("POST /signin next=%q = %d → %q, want %q", next, p.status, loc, target)
		}
	}
}

func TestSignInSessionCookieAndSignOut(t *testing.T) {
	st := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	base := consoleServer(t, st, scopedTokens())
	v := newVisitor(t, base, nil)

	if p := v.get("/?user=alice"); p.status != http.StatusSeeOther || p.header.Get("Location") != "/signin?next=%2F%3Fuser%3Dalice" {
		t.Fatalf("signed-out search = %d → %q, want the sign-in page", p.status, p.header.Get("Location"))
	}
	form := newVisitor(t, base, nil).get("/signin") // a first visit
	pre := cookieFrom(form, "tapd_mirror_csrf")
	if pre == nil || !pre.HttpOnly || pre.SameSite != http.SameSiteStrictMode || pre.Secure {
		t.Fatalf("CSRF cookie of the sign-in form = %+v", pre)
	}
	token := v.csrf("/signin")
	if p := v.post("/signin", url.Values{"token": {readTok}}); p.status != http.StatusForbidden || !strings.Contains(p.body, "CSRF") {
		t.Fatalf("sign-in without a CSRF token = %d %.200s", p.status, p.body)
	}
	if p := v.post("/signin", url.Values{"csrf": {token}, "token": {"not-a-token"}}); p.status != http.StatusUnauthorized ||
		!strings.Contains(p.body, "matches no configured API token") || cookieFrom(p, "tapd_mirror_session") != nil {
		t.Fatalf("sign-in with a wrong token = %d %.300s", p.status, p.body)
	}
	p := v.post("/signin", url.Values{"csrf": {token}, "token": {readTok}, "next": {"//evil.example/x"}})
	sess := cookieFrom(p, "tapd_mirror_session")
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/" {
		t.Fatalf("sign-in = %d → %q, want / (never another host)", p.status, p.header.Get("Location"))
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Secure || sess.Path != "/" ||
		strings.Contains(sess.Value, readTok) || len(sess.Value) < 40 {
		t.Fatalf("session cookie = %+v", sess)
	}
	if p := v.get("/"); p.status != 200 || !strings.Contains(p.body, "auditor") {
		t.Fatalf("signed-in search = %d", p.status)
	}
	// The session does not authenticate the API: cookies never replace bearer tokens there.
	if p := v.get("/api/v1/activity_log/export?format=csv"); p.status != http.StatusUnauthorized {
		t.Fatalf("API export with only a session cookie = %d, want 401", p.status)
	}
	if p := v.post("/signout", url.Values{"csrf": {v.csrf("/")}}); p.status != http.StatusSeeOther {
		t.Fatalf("sign-out = %d", p.status)
	}
	// The old cookie is dead server-side, even if a copy was kept.
	replay := newVisitor(t, base, nil)
	u, _ := url.Parse(base)
	replay.client.Jar.SetCookies(u, []*http.Cookie{{Name: "tapd_mirror_session", Value: sess.Value}})
	if p := replay.get("/"); p.status != http.StatusSeeOther {
		t.Fatalf("a signed-out session still browses: %d", p.status)
	}
}

func TestSessionCookieIsSecureBehindTLS(t *testing.T) {
	st := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	tlsSrv := httptest.NewTLSServer(newAPI(t, api.Options{Store: st, Tokens: scopedTokens(), Logger: testLogger()}).Handler())
	t.Cleanup(tlsSrv.Close)
	client := tlsSrv.Client()
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the test server's own certificate
	v := newVisitor(t, tlsSrv.URL, client)
	if c := cookieFrom(v.signIn(readTok), "tapd_mirror_session"); c == nil || !c.Secure {
		t.Fatalf("session cookie over TLS = %+v, want Secure", c)
	}
	// A TLS-terminating proxy on this machine says so with X-Forwarded-Proto.
	proxied := newVisitor(t, consoleServer(t, st, scopedTokens()), nil)
	proxied.header.Set("X-Forwarded-Proto", "https")
	if c := cookieFrom(proxied.signIn(readTok), "tapd_mirror_session"); c == nil || !c.Secure {
		t.Fatalf("session cookie behind a local TLS proxy = %+v, want Secure", c)
	}
}

func TestFormsRefuseCrossSiteAndMissingCSRF(t *testing.T) {
	st := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	v := newVisitor(t, consoleServer(t, st, scopedTokens()), nil)
	v.signIn(adminTok)
	token := v.csrf("/coverage")
	for _, tc := range []struct {
		name    string
		form    url.Values
		headers []string
		status  int
		says    string
	}{
		{"another site's page", url.Values{"csrf": {token}}, []string{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"}, 403, "another site"},
		{"no CSRF token", url.Values{"workspace": {""}}, nil, 403, "CSRF"},
		{"a token of another browser", url.Values{"csrf": {v.csrfOfAnotherBrowser()}}, nil, 403, "CSRF"},
	} {
		p := v.post("/coverage/resync", tc.form, tc.headers...)
		if p.status != tc.status || !strings.Contains(p.body, tc.says) {
			t.Errorf("%s: %d %.300s", tc.name, p.status, p.body)
		}
	}
	// With the token, the same admin reaches the handler (no syncer here: 503 says so).
	if p := v.post("/coverage/resync", url.Values{"csrf": {token}}); p.status != http.StatusServiceUnavailable {
		t.Errorf("resync with the token = %d %.300s", p.status, p.body)
	}
}

// csrfOfAnotherBrowser signs in a second visitor and returns its token.
func (v *visitor) csrfOfAnotherBrowser() string {
	other := newVisitor(v.t, v.base, nil)
	other.signIn(adminTok)
	return other.csrf("/coverage")
}

func TestSignInIsThrottledLikeTheAPI(t *testing.T) {
	st := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	v := newVisitor(t, consoleServer(t, st, scopedTokens()), nil)
	token := v.csrf("/signin")
	var last page
	for range 11 {
		last = v.post("/signin", url.Values{"csrf": {token}, "token": {"guess"}})
	}
	if last.status != http.StatusTooManyRequests || last.header.Get("Retry-After") == "" {
		t.Fatalf("11th wrong token = %d (Retry-After %q)", last.status, last.header.Get("Retry-After"))
	}
	if p := v.post("/signin", url.Values{"csrf": {token}, "token": {readTok}}); p.status != http.StatusTooManyRequests {
		t.Fatalf("a right token while throttled = %d, want 429 too", p.status)
	}
}

func TestOpenInstallBrowsesButRefusesAdminActions(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, st *storage.Store) {
		seedConsole(t, st)
		v := newVisitor(t, consoleServer(t, st, nil), nil)
		p := v.get("/")
		if p.status != 200 || !strings.Contains(p.body, "no API token is configured") || !strings.Contains(p.body, `id="results"`) {
			t.Fatalf("open search = %d %.300s", p.status, p.body)
		}
		if p := v.get("/coverage"); p.status != 200 || !strings.Contains(p.body, "TAPD_MIRROR_ADMIN_TOKEN") {
			t.Fatalf("open coverage page does not explain how to enable admin actions: %d", p.status)
		}
		p = v.post("/coverage/resync", url.Values{"csrf": {v.csrf("/signin")}, "mode": {"full"}})
		if p.status != http.StatusForbidden || !strings.Contains(p.body, "none is configured") {
			t.Fatalf("open resync = %d %.300s", p.status, p.body)
		}
		if p := v.get("/signin"); !strings.Contains(p.body, "browsing needs no sign-in") {
			t.Fatalf("open sign-in page does not say it is not needed")
		}
	})
}

func TestLanguageFromAcceptLanguageSwitchAndCookie(t *testing.T) {
	st := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	base := consoleServer(t, st, nil)
	for header, want := range map[string]string{
		"zh-CN,zh;q=0.9,en;q=0.8": "搜索",
		"en-GB,en;q=0.9,zh;q=0.8": "Search",
		"fr-FR, zh-TW;q=0.5":      "搜索",
		"fr-FR":                   "Search",
		"en;q=0.2, zh;q=0.7":      "搜索",
		"":                        "Search",
	} {
		p := newVisitor(t, base, nil).get("/", "Accept-Language", header)
		if !strings.Contains(p.body, `class="here">`+want+`</a>`) {
			t.Errorf("Accept-Language %q: the page is not in the language of %q", header, want)
		}
	}
	v := newVisitor(t, base, nil)
	p := v.get("/?lang=zh", "Accept-Language", "en")
	if c := cookieFrom(p, "tapd_mirror_lang"); c == nil || c.Value != "zh" || !strings.Contains(p.body, "新增") {
		t.Fatalf("switch to Chinese: cookie %+v", c)
	}
	if p := v.get("/timeline", "Accept-Language", "en"); !strings.Contains(p.body, "活动时间分布") {
		t.Fatal("the switch does not outlast the page")
	}
}

// seedConsole stores records the console's filters can tell apart.
func seedConsole(t *testing.T, st *storage.Store) []storage.Activity {
	t.Helper()
	base := time.Date(2026, 3, 2, 9, 0, 0, 0, shanghai)
	var in []storage.Activity
	for i := range 7 {
		object := []string{"attachment", "story", "bug"}[i%3]
		in = append(in, storage.Activity{Platform: "tapd", Serial: []string{"100", "200"}[i%2],
			ActionType: []string{"download", "add"}[i%2], ActionDetail: fmt.Sprintf("%s: report %d", object, i),
			Username: []string{"alice", "李娜"}[i%2], Timestamp: base.Add(time.Duration(i) * time.Hour), Source: storage.SourceTAPD,
			SourceID: strconv.Itoa(1000 + i), WorkspaceID: "100",
			Extra: map[string]string{"ip": fmt.Sprintf("10.0.0.%d", i%3), "operate_object_key": object, "title": fmt.Sprintf("report %d", i),
				"project_name": []string{"Payments", "Mobile"}[i%2]}})
	}
	if _, err := st.UpsertMirrored(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	return in
}

var rowID = regexp.MustCompile(`<tr data-id="(\d+)">`)

func TestSearchPageFilters(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, st *storage.Store) {
		seedConsole(t, st)
		v := newVisitor(t, consoleServer(t, st, nil), nil)
		titles := func(p page) []string {
			var out []string
			for _, m := range regexp.MustCompile(`<td class="title"><a href="[^"]*">([^<]*)</a>`).FindAllStringSubmatch(p.body, -1) {
				out = append(out, m[1])
			}
			return out
		}
		for _, tc := range []struct {
			query string
			want  []string // titles, newest first
		}{
			{"", []string{"report 6", "report 5", "report 4", "report 3", "report 2", "report 1", "report 0"}},
			{"object=attachment", []string{"report 6", "report 3", "report 0"}},
			{"ip=10.0.0.1", []string{"report 4", "report 1"}},
			{"q=REPORT+5", []string{"report 5"}},
			{"project=mobile", []string{"report 5", "report 3", "report 1"}}, // a project name, any case
			{"project=200", []string{"report 5", "report 3", "report 1"}},    // or its id
			{"project=Nowhere", nil},
			{"user=" + url.QueryEscape("李娜") + "&action=add", []string{"report 5", "report 3", "report 1"}},
			{"from=2026-03-02+11:00&to=2026-03-02+13:00", []string{"report 3", "report 2"}},
			{"from=2026-03-02&to=2026-03-02", []string{"report 6", "report 5", "report 4", "report 3", "report 2", "report 1", "report 0"}},
			{"to=2026-03-01", nil},
		} {
			p := v.get("/?" + tc.query)
			if p.status != 200 || !slices.Equal(titles(p), tc.want) {
				t.Errorf("%s: %d %v, want %v", tc.query, p.status, titles(p), tc.want)
			}
			if want := fmt.Sprintf(`<strong id="count">%d records match</strong>`, len(tc.want)); !strings.Contains(p.body, want) {
				t.Errorf("%s: count is not %d", tc.query, len(tc.want))
			}
		}
		for query, says := range map[string]string{
			"from=yesterday":                   `From: &#34;yesterday&#34; is not a time`,
			"from=2026-03-02&to=2026-03-01+10": "To: &#34;2026-03-01 10&#34; is not a time",
			"from=2026-03-03&to=2026-03-02":    "From must be before To",
			"q=" + strings.Repeat("x", 201):    "Text: at most 200 characters",
			"user=%01":                         "User: control character",
			"after=bm90LWEtY3Vyc29y":           "This page link is broken",
		} {
			if p := v.get("/?" + query); p.status != 400 || !strings.Contains(p.body, says) {
				t.Errorf("%s = %d, want 400 saying %q: %.2000s", query, p.status, says, p.body)
			}
		}
		// Every field is escaped: a title planted at TAPD stays text.
		if _, err := st.UpsertMirrored(context.Background(), []storage.Activity{{Platform: "tapd", ActionType: "add",
			ActionDetail: "x", Username: `<img src=x onerror=alert(1)>`, Timestamp: time.Now(), Source: storage.SourceTAPD, SourceID: "evil",
			Extra: map[string]string{"title": `<script>alert(1)</script>`}}}); err != nil {
			t.Fatal(err)
		}
		if p := v.get("/?q=x"); strings.Contains(p.body, "<script>alert") || strings.Contains(p.body, "<img src=x") {
			t.Fatal("a title or user name was not escaped")
		}
	})
}

func TestRecordPageAndExportThroughTheConsole(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, st *storage.Store) {
		seedConsole(t, st)
		base := consoleServer(t, st, scopedTokens())
		v := newVisitor(t, base, nil)
		if p := v.get("/export?format=csv"); p.status != http.StatusSeeOther {
			t.Fatalf("signed-out export = %d, want the sign-in page", p.status)
		}
		v.signIn(readTok)
		p := v.get("/?object=attachment")
		ids := rowID.FindAllStringSubmatch(p.body, -1)
		if len(ids) != 3 {
			t.Fatalf("rows: %v", ids)
		}
		rec := v.get("/record/" + ids[0][1] + "?back=" + url.QueryEscape("object=attachment"))
		for _, want := range []string{"report 6", "1006", "10.0.0.0", "Payments", `href="/?object=attachment"`, `data-state="no-checkpoint"`} {
			if !strings.Contains(rec.body, want) {
				t.Errorf("record page lacks %q", want)
			}
		}
		if p := v.get("/record/999999"); p.status != 404 || !strings.Contains(p.body, "Record 999999 does not exist") {
			t.Errorf("missing record = %d", p.status)
		}
		if p := v.get("/record/abc"); p.status != 404 {
			t.Errorf("record abc = %d", p.status)
		}
		// The console's export is the API's, byte for byte, for the same filters.
		api := newVisitor(t, base, nil)
		api.header.Set("Authorization", "Bearer "+readTok)
		for _, f := range []string{"csv", "ndjson"} {
			got := v.get("/export?format=" + f + "&object=attachment&from=2026-03-02&to=2026-03-02")
			from := time.Date(2026, 3, 2, 0, 0, 0, 0, shanghai)
			want := api.get(fmt.Sprintf("/api/v1/activity_log/export?format=%s&object=attachment&since=%d&until=%d", f, from.Unix(), from.AddDate(0, 0, 1).Unix()))
			if got.status != 200 || got.body != want.body || strings.Count(got.body, "\n") < 3 {
				t.Errorf("%s export differs from the API's:\n%s\n---\n%s", f, got.body, want.body)
			}
			if got.header.Get("Content-Disposition") == "" {
				t.Errorf("%s export is not a download", f)
			}
		}
		// An error of the API's export comes back as a page, with the API's reason.
		if p := v.get("/export?format=xlsx"); p.status != 400 || !strings.Contains(p.body, "format must be") || !strings.Contains(p.header.Get("Content-Type"), "text/html") {
			t.Errorf("export format=xlsx = %d %s %.300s", p.status, p.header.Get("Content-Type"), p.body)
		}
	})
}

func TestPagesCarrySecurityHeadersAndUnknownPathsAre404(t *testing.T) {
	st := storagetest.Open(t, storagetest.URL(t, "sqlite"))
	v := newVisitor(t, consoleServer(t, st, nil), nil)
	p := v.get("/")
	for h, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'", "X-Frame-Options": "DENY", "Cache-Control": "no-store",
		"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
	} {
		if !strings.Contains(p.header.Get(h), want) {
			t.Errorf("%s = %q, want %q", h, p.header.Get(h), want)
		}
	}
	if css := v.get("/static/console.css"); css.status != 200 || !strings.Contains(css.header.Get("Content-Type"), "text/css") ||
		!strings.HasPrefix(css.header.Get("Cache-Control"), "public, max-age=") {
		t.Errorf("stylesheet = %d %s, Cache-Control %q", css.status, css.header.Get("Content-Type"), css.header.Get("Cache-Control"))
	}
	if p := v.get("/nope"); p.status != 404 || !strings.Contains(p.header.Get("Content-Type"), "text/html") {
		t.Errorf("/nope = %d %s", p.status, p.header.Get("Content-Type"))
	}
	if p := v.get("/api/v1/nope"); p.status != 404 || !strings.Contains(p.body, `"code":404`) {
		t.Errorf("/api/v1/nope = %d %s: the API's own 404 must stay JSON", p.status, p.body)
	}
	if p := v.get("/", "Host", "evil.example"); p.status != http.StatusMisdirectedRequest {
		t.Errorf("console under a foreign Host = %d, want 421", p.status)
	}
}

func TestTimelineDrawsTheLastYearByDefault(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, st *storage.Store) {
		at := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 12, 0, 0, 0, shanghai) }
		var in []storage.Activity
		for i, ts := range []time.Time{at(2023, 5, 1), at(2025, 8, 1), at(2026, 3, 1), at(2026, 3, 2), at(2026, 3, 2)} {
			in = append(in, storage.Activity{Platform: "tapd", ActionType: "add", ActionDetail: "x", Timestamp: ts,
				Source: storage.SourceTAPD, SourceID: strconv.Itoa(i)})
		}
		if _, err := st.UpsertMirrored(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		v := newVisitor(t, consoleServer(t, st, nil), nil)
		p := v.get("/timeline")
		if !strings.Contains(p.body, "<strong>4 records match</strong>") || !strings.Contains(p.body, "Since 2025-03-02") ||
			!strings.Contains(p.body, "per week") {
			t.Fatalf("default timeline: %.3000s", p.body[strings.Index(p.body, "<h1>"):])
		}
		// Each bar links to its period; the week of Monday 2026-03-02 holds two records (Sunday the 1st is the week before).
		if !strings.Contains(p.body, "2026-03-02 – 2026-03-08: 2") || !strings.Contains(p.body, `href="/?from=2026-03-02&amp;to=2026-03-08"`) {
			t.Errorf("bars: %s", regexp.MustCompile(`<title>[^<]*: [1-9][^<]*</title>`).FindAllString(p.body, -1))
		}
		if p := v.get("/timeline?from=2020-01-01&by=day"); !strings.Contains(p.body, "<strong>5 records match</strong>") ||
			strings.Contains(p.body, `id="default-range"`) || !strings.Contains(p.body, "per month") {
			t.Errorf("a From was given: everything since, months (days would be too many bars)")
		}
	})
}

func TestRecordPageShowsItsInclusionProof(t *testing.T) {
	storagetest.EachStore(t, func(t *testing.T, st *storage.Store) {
		seedConsole(t, st)
		skey, _ := integrity.GenerateKey("console-proof-test")
		key, err := integrity.ParseKey(skey)
		if err != nil {
			t.Fatal(err)
		}
		cp, _, err := st.SignCheckpoint(context.Background(), key, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		v := newVisitor(t, consoleServer(t, st, nil), nil)
		id := rowID.FindStringSubmatch(v.get("/?q=report+3").body)[1]
		p := v.get("/record/" + id)
		if !strings.Contains(p.body, `data-state="proved"`) || !strings.Contains(p.body, `data-checks="true"`) ||
			strings.Contains(p.body, `data-checks="false"`) || !strings.Contains(p.body, strings.ReplaceAll(cp.Root.String(), "+", "&#43;")) ||
			!strings.Contains(p.body, "console-proof-test") {
			t.Fatalf("record page without its proof: %.2000s", p.body[strings.Index(p.body, `id="proof"`):])
		}
		// The search as a verification bundle: the API's own, through the console.
		srv := httptest.NewServer(newAPI(t, api.Options{Store: st, Location: shanghai, Logger: testLogger(),
			Integrity: api.Integrity{VerifierKey: key.VerifierKey()}}).Handler())
		t.Cleanup(srv.Close)
		bundle := newVisitor(t, srv.URL, nil).get("/export?format=bundle&object=attachment")
		if bundle.status != 200 || bundle.header.Get("Content-Type") != "application/x-tar" || len(bundle.body) < 1024 {
			t.Fatalf("bundle export = %d %s, %d bytes", bundle.status, bundle.header.Get("Content-Type"), len(bundle.body))
		}
		if p := v.get("/export?format=bundle&object=attachment"); p.status != http.StatusServiceUnavailable || !strings.Contains(p.body, "key") {
			t.Errorf("bundle without a key = %d %.300s", p.status, p.body)
		}
		// The whole log (holds, the access trail) is not for an open console's visitors.
		if p := v.get("/export?format=bundle"); p.status != http.StatusForbidden || !strings.Contains(p.body, "auditor") {
			t.Errorf("unfiltered bundle on an open console = %d %.300s", p.status, p.body)
		}
		// A record written after the checkpoint waits for the next one.
		newID, err := st.InsertActivity(context.Background(), storage.Activity{Platform: "x", ActionType: "y", Timestamp: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if p := v.get("/record/" + strconv.FormatInt(newID, 10)); !strings.Contains(p.body, `data-state="pending"`) {
			t.Fatalf("a record after the checkpoint: %.600s", p.body[strings.Index(p.body, `id="proof"`):])
		}
	})
}
