package config_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lib/pq"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// pqHosts is the host:port list lib/pq (the version in go.mod) will try for dsn.
func pqHosts(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		t.Fatalf("lib/pq refuses %q: %v", dsn, err)
	}
	hosts := []string{fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)}
	for _, m := range cfg.Multi {
		hosts = append(hosts, fmt.Sprintf("%s:%d", m.Host, m.Port))
	}
	return strings.Join(hosts, ",")
}

func TestPostgresHostListsReachTheDriverAsKeywords(t *testing.T) {
	const lost = "postgres://app@h1:6001,h2:6002/mirror"
	// What this conversion is for: given the URL, lib/pq keeps the ports in
	// the host names and adds its default port to each.
	if got := pqHosts(t, lost); got != "h1:6001:5432,h2:6002:5432" {
		t.Fatalf("lib/pq reads the host-list URL as %s; if it now parses it right, the conversion can go", got)
	}
	for _, tc := range []struct{ in, dsn, hosts string }{
		{"postgres://app:pw@h1:6001,h2:6002/mirror?target_session_attrs=read-write&sslmode=disable",
			"host=h1,h2 port=6001,6002 user=app password=pw dbname=mirror sslmode=disable target_session_attrs=read-write",
			"h1:6001,h2:6002"},
		{"postgresql://h1,h2/m", "host=h1,h2 dbname=m", "h1:5432,h2:5432"},
		{"postgres://a:p%40%27w@[::1]:6001,h2/m", `host=::1,h2 port=6001, user=a password='p@\'w' dbname=m`, "::1:6001,h2:5432"},
		{"postgres://h1:7,[fe80::1]/m?application_name=tapd%20mirror", "host=h1,fe80::1 port=7, dbname=m application_name='tapd mirror'", "h1:7,fe80::1:5432"},
		// One host or a keyword DSN reach the driver as written.
		{"postgres://app@db:6001/m?sslmode=disable", "postgres://app@db:6001/m?sslmode=disable", "db:6001"},
		{"host=h1,h2 port=6001,6002 dbname=m target_session_attrs=read-write", "host=h1,h2 port=6001,6002 dbname=m target_session_attrs=read-write", "h1:6001,h2:6002"},
	} {
		dialect, dsn, err := config.ParseDatabaseURL(tc.in)
		if err != nil || dialect != config.Postgres || dsn != tc.dsn {
			t.Errorf("ParseDatabaseURL(%q) = %s, %q, %v; want %q", tc.in, dialect, dsn, err, tc.dsn)
			continue
		}
		if got := pqHosts(t, dsn); got != tc.hosts {
			t.Errorf("%q: lib/pq tries %s, want %s", tc.in, got, tc.hosts)
		}
	}
	for in, want := range map[string]string{
		"postgres://h1,,h2/m":              "empty host",
		"postgres://h1:x:y,h2/m":           "neither host nor host:port",
		"postgres://a:b%zz@h1,h2/m":        "does not parse",
		"postgres://h1,h2/m?bad-key=1":     "not a connection keyword",
		"host=db password='unterminated":   "libpq keyword DSN",
		"tapd-mirror.db":                   "must start with postgres://",
		"postgres//app@h1,h2/m":            "must start with postgres://",
		"mysql://app:secretpw1@h1,h2/m":    "must start with postgres://",
		"postgres://app:secretpw1@h1,,h2/": "empty host",
	} {
		_, _, err := config.ParseDatabaseURL(in)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "secretpw1") {
			t.Errorf("ParseDatabaseURL(%q) = %v, want an error saying %q without the password", in, err, want)
		}
	}
}

// TestHostListPasswordsAreMasked covers the spellings that name several
// hosts, with the password secretpw1 in each.
func TestHostListPasswordsAreMasked(t *testing.T) {
	for _, tc := range []struct{ in, want, pw string }{
		{"postgres://app:secretpw1@h1:6001,h2:6002/m?target_session_attrs=read-write",
			"host=h1,h2 port=6001,6002 user=app password=xxxxx dbname=m target_session_attrs=read-write", "secretpw1"},
		{"postgres://app:secret%40pw1@[::1]:6001,h2/m", "host=::1,h2 port=6001, user=app password=xxxxx dbname=m", "secret@pw1"},
		{"postgres://app@h1,h2/m?password=secretpw1", "host=h1,h2 user=app dbname=m password=xxxxx", "secretpw1"},
		{"host=h1,h2 port=6001,6002 password='secret pw1' target_session_attrs=read-write",
			"host=h1,h2 port=6001,6002 password=xxxxx target_session_attrs=read-write", "secret pw1"},
		{"postgres://app:secretpw1@h1,,h2/m", config.HiddenURL, "secretpw1"},
	} {
		if got := config.RedactDatabaseURL(tc.in); got != tc.want {
			t.Errorf("RedactDatabaseURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		c, err := config.Load("", env(map[string]string{"TAPD_MIRROR_DATABASE_URL": "postgres://db/m", "TAPD_MIRROR_DATABASE_READ_URL": tc.in}))
		if err != nil {
			t.Fatal(err)
		}
		if red := c.Redacted(); strings.Contains(strings.ReplaceAll(red, "tapd.client_secret", ""), "secret") {
			t.Errorf("%q: the configuration shows the password:\n%s", tc.in, red)
		}
		// Whatever a driver error quotes — the URL, the DSN it became, the
		// userinfo or the password alone — the log scrubber masks.
		secrets := c.Secrets()
		_, dsn, _ := config.ParseDatabaseURL(tc.in)
		for _, text := range []string{tc.in, dsn, tc.pw} {
			if got := config.Scrub("pq: "+text, secrets...); strings.Contains(got, "secret") {
				t.Errorf("%q: Scrub leaves %q", tc.in, got)
			}
		}
	}
}
