package config_test

import (
	"os"
	"path/filepath"
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
	if strings.Contains(red, "secret") || strings.Contains(red, ":pw@") || !strings.Contains(red, "tapd.api_password") {
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
		"TAPD_MIRROR_LISTEN":        "abc",
		"TAPD_MIRROR_DATABASE_URL":  "mysql://x",
		"TAPD_MIRROR_TAPD_BASE_URL": "ftp://x",
		"TAPD_MIRROR_WORKSPACES":    "abc,team:5",
		"TAPD_MIRROR_SYNC_OVERLAP":  "10s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	for _, want := range []string{
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

func TestPublicListenNeedsToken(t *testing.T) {
	c := config.Default()
	c.Listen = "0.0.0.0:50809"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "admin_token is empty") {
		t.Fatalf("err = %v", err)
	}
	c.AdminToken = "x"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
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
