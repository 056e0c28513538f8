package config_test

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsAreValid(t *testing.T) {
	c, err := config.Load("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if c.DatabaseURL != "sqlite:tapd-mirror.db" || c.Listen != "127.0.0.1:50809" || c.Sync.Interval.Duration != 10*time.Minute ||
		c.Sync.Overlap.Duration != 5*time.Minute || c.TAPD.PageSize != 200 || c.TAPD.RequestsPerMinute != 60 {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestFileThenEnvOverride(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte(`
database_url: postgres://u:pw@db/x
tapd:
  api_user: bot
  api_password: file-secret
  page_size: 100
sync:
  workspaces: ["10074561", "company:2001"]
  interval: 30m
`), 0o600)
	c, err := config.Load(f, env(map[string]string{
		"TAPD_MIRROR_WORKSPACES":        "1, projects:2001 ,",
		"TAPD_MIRROR_SYNC_OVERLAP":      "2m",
		"TAPD_MIRROR_TAPD_API_PASSWORD": "env-secret",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Sync.Workspaces, "|") != "1|projects:2001" || c.Sync.Interval.Duration != 30*time.Minute ||
		c.Sync.Overlap.Duration != 2*time.Minute || c.TAPD.PageSize != 100 || c.TAPD.APIPassword != "env-secret" {
		t.Fatalf("merged = %+v", c)
	}
	red := c.Redacted()
	if strings.Contains(red, "env-secret") || strings.Contains(red, ":pw@") || !strings.Contains(red, "tapd.api_password") {
		t.Fatalf("redacted dump leaks or misses keys:\n%s", red)
	}
}

func TestUnknownKeyIsAnError(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte("sync:\n  intervall: 5m\n"), 0o600)
	if _, err := config.Load(f, env(nil)); err == nil || !strings.Contains(err.Error(), "intervall") {
		t.Fatalf("err = %v, want the misspelt key named", err)
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	c, err := config.Load("", env(map[string]string{
		"TAPD_MIRROR_LISTEN":               "abc",
		"TAPD_MIRROR_DATABASE_URL":         "mysql://x",
		"TAPD_MIRROR_TAPD_BASE_URL":        "ftp://x",
		"TAPD_MIRROR_WORKSPACES":           "abc,team:5",
		"TAPD_MIRROR_SYNC_OVERLAP":         "10s",
		"TAPD_MIRROR_BACKUP_INTERVAL":      "48h",
		"TAPD_MIRROR_BACKUP_FULL_INTERVAL": "24h",
		"TAPD_MIRROR_BACKUP_KEEP":          "0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	for _, want := range []string{
		"backup.full_interval: 24h0m0s is shorter than backup.interval 48h0m0s (TAPD_MIRROR_BACKUP_FULL_INTERVAL)",
		"backup.keep: 0: keep at least 1 full backup (TAPD_MIRROR_BACKUP_KEEP)",
		`listen: "abc" is not host:port (TAPD_MIRROR_LISTEN)`,
		"database_url:", "(TAPD_MIRROR_DATABASE_URL)",
		"tapd.base_url:", `workspace "abc"`, `unknown prefix "team"`,
		"no TAPD credentials", "sync.overlap: 10s is too short",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v\nmissing %q", err, want)
		}
	}
	if _, err := config.Load("", env(map[string]string{"TAPD_MIRROR_SYNC_INTERVAL": "often"})); err == nil ||
		!strings.Contains(err.Error(), "TAPD_MIRROR_SYNC_INTERVAL") {
		t.Errorf("bad env duration = %v", err)
	}
}

func TestPublicListenNeedsLongTokens(t *testing.T) {
	long := strings.Repeat("a", config.MinPublicTokenLength)
	cases := []struct {
		name  string
		setup func(c *config.Config)
		want  string // "" = valid
	}{
		{"no token", func(c *config.Config) {}, `listen: "0.0.0.0:50809" is reachable from other machines but no API token is configured`},
		{"short admin token", func(c *config.Config) { c.AdminToken = "x" }, "admin_token: is 1 characters;"},
		{"short env read token", func(c *config.Config) { c.AdminToken = long; c.Auth.ReadToken = long[:31] },
			"auth.read_token: is 31 characters; listen \"0.0.0.0:50809\" is reachable from other machines, which needs tokens of at least 32 characters (e.g. openssl rand -hex 32) (TAPD_MIRROR_READ_TOKEN)"},
		{"short listed token", func(c *config.Config) {
			c.Auth.Tokens = []config.Token{{Name: "ci", Token: "short-token", Scope: config.ScopeRead}}
		}, "auth.tokens[0].token: is 11 characters"},
		{"long tokens", func(c *config.Config) {
			c.AdminToken = long
			c.Auth.Tokens = []config.Token{{Name: "ci", Token: long + "b", Scope: config.ScopeRead}}
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			c.Listen = "0.0.0.0:50809"
			tc.setup(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// On loopback, short tokens are the operator's business.
	c := config.Default()
	c.AdminToken = "x"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestAuthTokensFromFileAndEnv(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(f, []byte(`
admin_token: the-admin
auth:
  tokens:
    - {name: compliance, token: comp-token, scope: read}
    - {name: ops, token: ops-token, scope: admin}
  require_read_token: true
`), 0o600)
	c, err := config.Load(f, env(map[string]string{"TAPD_MIRROR_READ_TOKEN": "env-read", "TAPD_MIRROR_WRITE_TOKEN": "env-write",
		"TAPD_MIRROR_ALLOWED_HOSTS": "mirror.internal, Mirror.Example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tok := range c.APITokens() {
		got[tok.Name] = tok.Token + "/" + string(tok.Scope)
	}
	want := map[string]string{"admin_token": "the-admin/admin", "auth.write_token": "env-write/write", "auth.read_token": "env-read/read",
		"compliance": "comp-token/read", "ops": "ops-token/admin"}
	if len(got) != len(want) {
		t.Fatalf("tokens = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("tokens = %v, want %v", got, want)
		}
	}
	if !c.Auth.RequireReadToken || strings.Join(c.AllowedHosts, "|") != "mirror.internal|Mirror.Example.com" {
		t.Fatalf("auth = %+v, allowed hosts %v", c.Auth, c.AllowedHosts)
	}
	red := c.Redacted()
	for _, secret := range []string{"the-admin", "comp-token", "ops-token", "env-read", "env-write"} {
		if strings.Contains(red, secret) {
			t.Fatalf("config dump shows %s:\n%s", secret, red)
		}
	}
	if !strings.Contains(red, "auth.tokens[1]") || !strings.Contains(red, "name=ops scope=admin token=****") {
		t.Fatalf("config dump does not describe the token list:\n%s", red)
	}
}

func TestAuthValidation(t *testing.T) {
	cases := []struct {
		name  string
		setup func(c *config.Config)
		want  string
	}{
		{"empty name", func(c *config.Config) { c.Auth.Tokens = []config.Token{{Token: "t1", Scope: "read"}} }, "auth.tokens[0].name: is empty"},
		{"duplicate name", func(c *config.Config) {
			c.Auth.Tokens = []config.Token{{Name: "a", Token: "t1", Scope: "read"}, {Name: "a", Token: "t2", Scope: "read"}}
		}, `auth.tokens[1].name: "a" is used twice`},
		{"reserved name", func(c *config.Config) {
			c.Auth.Tokens = []config.Token{{Name: "admin_token", Token: "t1", Scope: "read"}}
		}, `"admin_token" is used twice`},
		{"bad scope", func(c *config.Config) { c.Auth.Tokens = []config.Token{{Name: "a", Token: "t1", Scope: "root"}} }, `auth.tokens[0].scope: "root" is not read, write, auditor or admin`},
		{"empty token", func(c *config.Config) { c.Auth.Tokens = []config.Token{{Name: "a", Scope: "read"}} }, "auth.tokens[0].token: is empty"},
		{"same token twice", func(c *config.Config) { c.AdminToken = "same"; c.Auth.ReadToken = "same" }, "auth.read_token: is the same token as admin_token"},
		{"token with a space", func(c *config.Config) { c.AdminToken = "a b" }, "admin_token: must be printable ASCII without spaces"},
		{"token with non-ASCII", func(c *config.Config) { c.Auth.WriteToken = "clé" }, "auth.write_token: must be printable ASCII"},
		{"read token required but none", func(c *config.Config) { c.Auth.RequireReadToken = true }, "auth.require_read_token: is true but no API token is configured"},
		{"allowed host with port", func(c *config.Config) { c.AllowedHosts = []string{"mirror.internal:50809"} }, `allowed_hosts: "mirror.internal:50809" is not a host name`},
		{"allowed host as URL", func(c *config.Config) { c.AllowedHosts = []string{"http://mirror"} }, `"http://mirror" is not a host name`},
		{"export limit zero", func(c *config.Config) { c.Export.MaxConcurrent = 0 }, "export.max_concurrent: 0 is outside 1..16"},
		{"export limit huge", func(c *config.Config) { c.Export.MaxConcurrent = 17 }, "export.max_concurrent: 17 is outside 1..16"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			tc.setup(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	c := config.Default()
	c.AllowedHosts = []string{"*", "mirror.internal", "10.0.0.5", "[fd00::1]", "fd00::2"}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid allowed_hosts refused: %v", err)
	}
}

func TestScopeIncludes(t *testing.T) {
	cases := []struct {
		have, need config.Scope
		want       bool
	}{
		{config.ScopeAdmin, config.ScopeWrite, true},
		{config.ScopeAdmin, config.ScopeRead, true},
		{config.ScopeWrite, config.ScopeRead, true},
		{config.ScopeWrite, config.ScopeAdmin, false},
		{config.ScopeRead, config.ScopeWrite, false},
		{config.ScopeRead, "", true},
		{"", config.ScopeRead, false},
		{"root", config.ScopeRead, false},
	}
	for _, tc := range cases {
		if got := tc.have.Includes(tc.need); got != tc.want {
			t.Errorf("%q includes %q = %v", tc.have, tc.need, got)
		}
	}
}

func TestTAPDBaseURLMustBeHTTPS(t *testing.T) {
	cases := []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"https://api.tapd.cn", false, true},
		{"http://api.tapd.cn", false, false},
		{"http://api.tapd.cn", true, true},
		{"http://127.0.0.1:8080", false, true},
		{"http://localhost:8080/tapd", false, true},
		{"http://[::1]:8080", false, true},
		{"http://10.0.0.7", false, false},
		{"http://user:tapd-url-secret@tapd.internal", false, false},
	}
	for _, tc := range cases {
		c := config.Default()
		c.TAPD.BaseURL, c.TAPD.AllowInsecure = tc.url, tc.insecure
		err := c.Validate()
		if tc.ok != (err == nil) {
			t.Errorf("base_url %s (allow_insecure %v): err = %v", tc.url, tc.insecure, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "TAPD_MIRROR_TAPD_ALLOW_INSECURE") || strings.Contains(err.Error(), "tapd-url-secret")) {
			t.Errorf("base_url %s: error does not say how to fix it, or leaks: %v", tc.url, err)
		}
	}
}

// dbForms are database_url spellings with the password secretpw1 in each
// place a password can hide.
var dbForms = []struct{ name, url string }{
	{"userinfo", "postgres://app:secretpw1@db.internal:5432/mirror?sslmode=require"},
	{"encoded userinfo", "postgres://app:secret%40pw1@db.internal/mirror"},
	{"query password", "postgresql://app@db.internal/mirror?sslmode=require&password=secretpw1"},
	{"query sslpassword", "postgres://db.internal/mirror?sslpassword=secretpw1"},
	{"keyword DSN", "host=db.internal user=app password=secretpw1 dbname=mirror"},
	{"quoted keyword DSN", "host=db.internal password='secret pw1 \\' x' dbname=mirror"},
	{"unparseable URL", "postgres://app:secretpw1%zz@db.internal/mirror"},
	{"URL with fragment", "postgres://db.internal/mirror#secretpw1"},
	{"garbage", "secretpw1"},
}

func TestRedactDatabaseURL(t *testing.T) {
	for _, f := range dbForms {
		got := config.RedactDatabaseURL(f.url)
		if strings.Contains(got, "secret") {
			t.Errorf("%s: %q shows the password", f.name, got)
		}
	}
	for in, want := range map[string]string{
		"postgres://app:pw@db:5432/mirror?sslmode=require": "postgres://app:xxxxx@db:5432/mirror?sslmode=require",
		"postgres://db/mirror?password=pw&sslmode=disable": "postgres://db/mirror?password=xxxxx&sslmode=disable",
		"host=db user=app password='p w' dbname=m":         "host=db user=app password=xxxxx dbname=m",
		"postgres://app@db/mirror":                         "postgres://app@db/mirror",
		"sqlite:/var/lib/tapd-mirror/m.db":                 "sqlite:/var/lib/tapd-mirror/m.db",
		"postgres://a:b%zz@db/m":                           config.HiddenURL,
		"just-text":                                        config.HiddenURL,
	} {
		if got := config.RedactDatabaseURL(in); got != want {
			t.Errorf("RedactDatabaseURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNoPasswordFormLeaksFromConfig(t *testing.T) {
	for _, f := range dbForms {
		t.Run(f.name, func(t *testing.T) {
			c, err := config.Load("", env(map[string]string{"TAPD_MIRROR_DATABASE_URL": f.url,
				"TAPD_MIRROR_TAPD_BASE_URL": "https://bot:secretpw2@tapd.internal/"}))
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			out.WriteString(c.Redacted())
			if err := c.Validate(); err != nil {
				out.WriteString(err.Error())
			}
			if _, _, err := config.ParseDatabaseURL(f.url); err != nil {
				out.WriteString(err.Error())
			}
			if strings.Contains(strings.ReplaceAll(out.String(), "tapd.client_secret", ""), "secret") { // the key's own name aside
				t.Fatalf("a password shows:\n%s", out.String())
			}
			secrets := strings.Join(c.Secrets(), "\n")
			if !strings.Contains(secrets, "secretpw2") || (f.name != "URL with fragment" && !strings.Contains(secrets, "secret")) {
				t.Fatalf("Secrets() misses a password: %q", secrets)
			}
		})
	}
}
func TestParseWorkspace(t *testing.T) {
	for in, want := range map[string]config.Workspace{
		"10074561":      {Key: "10074561", ID: "10074561"},
		"company:2001":  {Key: "company:2001", ID: "2001", CompanyOnly: true},
		"projects:2001": {Key: "projects:2001", ID: "2001", ExpandProjects: true},
		"all:2001":      {Key: "all:2001", ID: "2001", CompanyWide: true},
	} {
		got, err := config.ParseWorkspace(in)
		if err != nil || got != want {
			t.Errorf("ParseWorkspace(%q) = %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "company:", "x:1", "12a"} {
		if _, err := config.ParseWorkspace(bad); err == nil {
			t.Errorf("ParseWorkspace(%q) accepted", bad)
		}
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	c, err := config.Load("../tapd-mirror.example.yaml", env(map[string]string{"TAPD_MIRROR_TAPD_API_PASSWORD": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("the shipped example config is invalid: %v", err)
	}
	// Every setting is documented in the example file.
	raw, _ := os.ReadFile("../tapd-mirror.example.yaml")
	for _, f := range config.Fields {
		if !strings.Contains(string(raw), f.Env) {
			t.Errorf("example config does not mention %s (%s)", f.Key, f.Env)
		}
	}
}

func TestServedHostsAndPublicListen(t *testing.T) {
	c := config.Default()
	c.Listen, c.AllowedHosts = "mirror.internal:50809", []string{"alias.internal"}
	if got := strings.Join(c.ServedHosts(), ","); got != "alias.internal,mirror.internal" {
		t.Fatalf("ServedHosts = %s", got)
	}
	for listen, public := range map[string]bool{"127.0.0.1:1": false, "localhost:1": false, "[::1]:1": false,
		"0.0.0.0:1": true, ":1": true, "10.0.0.5:1": true, "mirror.internal:1": true} {
		c.Listen = listen
		if c.PublicListen() != public {
			t.Errorf("PublicListen(%s) = %v", listen, !public)
		}
	}
}

func TestExactlyOneTAPDAuthMethod(t *testing.T) {
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"basic and oauth": {map[string]string{"TAPD_MIRROR_TAPD_API_USER": "u", "TAPD_MIRROR_TAPD_API_PASSWORD": "p",
			"TAPD_MIRROR_TAPD_CLIENT_ID": "id", "TAPD_MIRROR_TAPD_CLIENT_SECRET": "s"}, "exactly one TAPD auth method"},
		"token and oauth": {map[string]string{"TAPD_MIRROR_TAPD_ACCESS_TOKEN": "t",
			"TAPD_MIRROR_TAPD_CLIENT_ID": "id", "TAPD_MIRROR_TAPD_CLIENT_SECRET": "s"}, "exactly one TAPD auth method"},
		"id without secret": {map[string]string{"TAPD_MIRROR_TAPD_CLIENT_ID": "id"}, "client_id and client_secret must be set together"},
		"oauth alone":       {map[string]string{"TAPD_MIRROR_TAPD_CLIENT_ID": "id", "TAPD_MIRROR_TAPD_CLIENT_SECRET": "s", "TAPD_MIRROR_WORKSPACES": "1"}, ""},
	} {
		c, err := config.Load("", env(tc.env))
		if err != nil {
			t.Fatal(err)
		}
		err = c.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestReadReplicaURL(t *testing.T) {
	c, _ := config.Load("", env(map[string]string{"TAPD_MIRROR_DATABASE_URL": "postgres://a@db/x",
		"TAPD_MIRROR_DATABASE_READ_URL": "postgres://app:replicapw9@replica/x"}))
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c.Redacted(), "replicapw9") || !strings.Contains(strings.Join(c.Secrets(), " "), "replicapw9") {
		t.Fatalf("the replica's password is not treated as a secret:\n%s", c.Redacted())
	}
	c.DatabaseURL = "sqlite:x.db"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "database_read_url") {
		t.Fatalf("SQLite with a replica: %v", err)
	}
}

func TestIntegrityAndRetentionSettings(t *testing.T) {
	c, err := config.Load("", env(map[string]string{"TAPD_MIRROR_RETENTION": "local=400d, tapd=forever"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.Retention.String(); got != "local=400d" || c.Retention["local"].Duration != 400*24*time.Hour {
		t.Fatalf("retention = %q %v", got, c.Retention)
	}
	if c.IntegrityKeyFile() != "tapd-mirror.key" || c.Integrity.CheckpointInterval.Duration != time.Minute {
		t.Fatalf("defaults: key %s interval %s", c.IntegrityKeyFile(), c.Integrity.CheckpointInterval)
	}
	c.DatabaseURL = "sqlite:/data/mirror/db.sqlite"
	if c.IntegrityKeyFile() != "/data/mirror/tapd-mirror.key" {
		t.Fatalf("key file beside SQLite = %s", c.IntegrityKeyFile())
	}
	for _, bad := range []map[string]string{
		{"TAPD_MIRROR_RETENTION": "tapd=30d"},            // TAPD still serves those records
		{"TAPD_MIRROR_RETENTION": "remote=30d"},          // no such source
		{"TAPD_MIRROR_RETENTION": "local=3h"},            // shorter than a day
		{"TAPD_MIRROR_INTEGRITY_LOG_NAME": "my log"},     // not a key name
		{"TAPD_MIRROR_INTEGRITY_PUBLISH_URL": "ftp://x"}, // not http(s)
	} {
		c, err := config.Load("", env(bad))
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("%v was accepted", bad)
		}
	}
	raw := "retention:\n  local: 400d\n  tapd: 3650d\nintegrity:\n  publish_url: https://user:s3cret@witness.example/cp\n"
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(raw), 0o600)
	c, err = config.Load(path, env(nil))
	if err != nil || c.Validate() != nil || c.Retention["tapd"].Duration != 3650*24*time.Hour {
		t.Fatalf("file: %+v %v", c.Retention, err)
	}
	if strings.Contains(c.Redacted(), "s3cret") || !slices.Contains(c.Secrets(), "s3cret") {
		t.Fatalf("publish_url password shown:\n%s", c.Redacted())
	}
}

// TestDestinationURLsHideEveryQueryValueAndTheUserinfo: a URL we send to
// carries its credentials anywhere in its query or userinfo.
func TestDestinationURLsHideEveryQueryValueAndTheUserinfo(t *testing.T) {
	for raw, want := range map[string]struct {
		shown   string
		secrets []string
	}{
		"https://witness.example/cp?access_token=tok1234&x=a%2Fb": {"https://witness.example/cp?access_token=xxxxx&x=xxxxx",
			[]string{"tok1234", "a%2Fb", "a/b"}},
		"https://bob:pw%40123@witness.example/cp#frag": {"https://xxxxx:xxxxx@witness.example/cp", []string{"bob:pw%40123", "bob", "pw@123"}},
		"https://key12345@hooks.example/":              {"https://xxxxx@hooks.example/", []string{"key12345"}},
		"https://witness.example/cp?bare-token-1&k=":   {"https://witness.example/cp?xxxxx&k=xxxxx", []string{"bare-token-1"}},
		"https://witness.example/cp":                   {"https://witness.example/cp", nil},
		"https://wit ness.example/%zz?token=t0ken":     {config.HiddenURL, []string{"https://wit ness.example/%zz?token=t0ken"}},
		"": {"", nil},
	} {
		shown, secrets := config.RedactDestinationURL(raw)
		if shown != want.shown {
			t.Errorf("RedactDestinationURL(%q) shows %q, want %q", raw, shown, want.shown)
		}
		for _, s := range want.secrets {
			if !slices.Contains(secrets, s) {
				t.Errorf("RedactDestinationURL(%q) secrets %q lack %q", raw, secrets, s)
			}
		}
	}
	c := config.Config{Integrity: config.Integrity{PublishURL: "https://u:pw12345@witness.example/cp?access_token=tok98765"}}
	if got := config.Scrub(`Post "https://u:pw12345@witness.example/cp?access_token=tok98765": EOF`, c.Secrets()...); strings.Contains(got, "12345") ||
		strings.Contains(got, "98765") {
		t.Errorf("scrubbed error = %s", got)
	}
	if red := c.Redacted(); !strings.Contains(red, "integrity.publish_url      = https://xxxxx:xxxxx@witness.example/cp?access_token=xxxxx\n") {
		t.Errorf("config check shows:\n%s", red)
	}
}

// TestBasicCredentialsAreScrubbedInBase64: what goes on the wire as
// "Authorization: Basic …" is a secret too, as an echo of it may come back.
func TestBasicCredentialsAreScrubbedInBase64(t *testing.T) {
	c := config.Config{TAPD: config.TAPD{APIUser: "bot", APIPassword: "pw?>?>1", ClientID: "app", ClientSecret: "s3cret-app"}}
	for _, pair := range []string{"bot:pw?>?>1", "app:s3cret-app"} {
		std := base64.StdEncoding.EncodeToString([]byte(pair))
		for _, echo := range []string{std, strings.TrimRight(std, "="), strings.ReplaceAll(std, "/", `\/`)} {
			if got := config.Scrub(`{"info":"denied (Authorization: Basic `+echo+`)"}`, c.Secrets()...); strings.Contains(got, strings.TrimRight(echo, "=")) {
				t.Errorf("the base64 of %q survives scrubbing: %s", pair, got)
			}
		}
	}
}
