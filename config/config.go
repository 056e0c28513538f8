// Package config loads tapd-mirror's settings from an optional YAML file and
// the environment, applies defaults, and validates the result.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole of tapd-mirror's configuration.
type Config struct {
	DatabaseURL string `yaml:"database_url"`
	// DatabaseReadURL, optional, is a PostgreSQL read replica for list,
	// count and export.
	DatabaseReadURL string   `yaml:"database_read_url"`
	Listen          string   `yaml:"listen"`
	AllowedHosts    []string `yaml:"allowed_hosts"`
	AdminToken      string   `yaml:"admin_token"`
	Auth            Auth     `yaml:"auth"`
	Timezone        string   `yaml:"timezone"`
	TAPD            TAPD     `yaml:"tapd"`
	Sync            Sync     `yaml:"sync"`
	Export          Export   `yaml:"export"`

	// The verifiable archive: see integrity.go.
	Integrity Integrity `yaml:"integrity"`
	Retention Retention `yaml:"retention"`
	Backup    Backup    `yaml:"backup"`

	// Forward lists the destinations of the integrity log's events: see forward.go.
	Forward []Forward `yaml:"forward"`
	// Alerts are the rules evaluated on ingest and their notifiers: see alerts.go.
	Alerts Alerts `yaml:"alerts"`

	// AccessLog configures the access trail: see access.go.
	AccessLog AccessLog `yaml:"access_log"`
}

// Auth holds the API's bearer tokens beyond admin_token.
type Auth struct {
	ReadToken        string  `yaml:"read_token"`
	WriteToken       string  `yaml:"write_token"`
	AuditorToken     string  `yaml:"auditor_token"`
	Tokens           []Token `yaml:"tokens"`
	RequireReadToken bool    `yaml:"require_read_token"`
}

// Export bounds the streaming export endpoint.
type Export struct {
	MaxConcurrent int `yaml:"max_concurrent"`
}

// TAPD holds how to reach the TAPD open API.
type TAPD struct {
	BaseURL     string `yaml:"base_url"`
	APIUser     string `yaml:"api_user"`
	APIPassword string `yaml:"api_password"`
	AccessToken string `yaml:"access_token"`
	// An OAuth app instead: the client-credentials grant, renewed as it expires.
	ClientID          string `yaml:"client_id"`
	ClientSecret      string `yaml:"client_secret"`
	PageSize          int    `yaml:"page_size"`
	RequestsPerMinute int    `yaml:"requests_per_minute"`
	// PenaltyMax is the longest pause after TAPD's 429s (1m, 2m, 4m … up to it).
	PenaltyMax Duration `yaml:"penalty_max"`
	// TAPD's limits, as settings rather than constants: TAPD may change them.
	HorizonDays   int  `yaml:"horizon_days"` // how far back TAPD answers
	SplitAbove    int  `yaml:"split_above"`  // split a window in time before paging more records than this
	PagingCap     int  `yaml:"paging_cap"`   // TAPD refuses page × limit above this
	AllowInsecure bool `yaml:"allow_insecure"`
}

// Sync holds what to mirror and how often.
type Sync struct {
	Workspaces []string `yaml:"workspaces"`
	Interval   Duration `yaml:"interval"`
	Overlap    Duration `yaml:"overlap"`
	// MaxConcurrent bounds how many runs sync at once, whatever started them.
	MaxConcurrent int `yaml:"max_concurrent"`
	// Lease is how long a target's lease lasts without renewal; a run whose
	// process died is taken over after it.
	Lease Duration `yaml:"lease"`
	// Settle is how long after a window closes TAPD may still add records to
	// it; SettleCheck is how often those windows are re-counted.
	Settle      Duration `yaml:"settle"`
	SettleCheck Duration `yaml:"settle_check"`
	// RunHistory is how long finished run records are kept.
	RunHistory Duration `yaml:"run_history"`
}

// Duration is a time.Duration written as "10m" in YAML and env.
type Duration struct{ time.Duration }

// UnmarshalYAML accepts Go duration strings such as "90s" or "10m".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 10m or 90s", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration back as "10m0s".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		DatabaseURL: "sqlite:tapd-mirror.db",
		Listen:      "127.0.0.1:50809",
		Timezone:    "Asia/Shanghai",
		TAPD: TAPD{
			BaseURL:           "https://api.tapd.cn",
			PageSize:          200,
			RequestsPerMinute: 60,
			PenaltyMax:        Duration{30 * time.Minute},
			HorizonDays:       182,
			SplitAbove:        5000,
			PagingCap:         20000,
		},
		Sync: Sync{
			Interval:      Duration{10 * time.Minute},
			Overlap:       Duration{5 * time.Minute},
			MaxConcurrent: 4,
			Lease:         Duration{5 * time.Minute},
			Settle:        Duration{48 * time.Hour},
			SettleCheck:   Duration{time.Hour},
			RunHistory:    Duration{90 * 24 * time.Hour},
		},
		Export: Export{MaxConcurrent: 2},
		Integrity: Integrity{LogName: "tapd-mirror", CheckpointInterval: Duration{time.Minute},
			VerifyInterval: Duration{24 * time.Hour}},
		Backup:    defaultBackup,
		AccessLog: defaultAccessLog,
	}
}

// Field describes one setting: its file key, its env var and how to set it
// from a string. The table below is the single list of every setting.
type Field struct {
	Key    string
	Env    string
	Secret bool
	set    func(c *Config, v string) error
	get    func(c *Config) string
}

// Fields lists every setting in the order the README documents them.
var Fields = append([]Field{
	strField("database_url", "TAPD_MIRROR_DATABASE_URL", false, func(c *Config) *string { return &c.DatabaseURL }),
	strField("database_read_url", "TAPD_MIRROR_DATABASE_READ_URL", false, func(c *Config) *string { return &c.DatabaseReadURL }),
	strField("listen", "TAPD_MIRROR_LISTEN", false, func(c *Config) *string { return &c.Listen }),
	listField("allowed_hosts", "TAPD_MIRROR_ALLOWED_HOSTS", func(c *Config) *[]string { return &c.AllowedHosts }),
	strField("admin_token", "TAPD_MIRROR_ADMIN_TOKEN", true, func(c *Config) *string { return &c.AdminToken }),
	strField("auth.read_token", "TAPD_MIRROR_READ_TOKEN", true, func(c *Config) *string { return &c.Auth.ReadToken }),
	strField("auth.write_token", "TAPD_MIRROR_WRITE_TOKEN", true, func(c *Config) *string { return &c.Auth.WriteToken }),
	strField("auth.auditor_token", "TAPD_MIRROR_AUDITOR_TOKEN", true, func(c *Config) *string { return &c.Auth.AuditorToken }),
	boolField("auth.require_read_token", "TAPD_MIRROR_REQUIRE_READ_TOKEN", func(c *Config) *bool { return &c.Auth.RequireReadToken }),
	strField("timezone", "TAPD_MIRROR_TIMEZONE", false, func(c *Config) *string { return &c.Timezone }),
	strField("tapd.base_url", "TAPD_MIRROR_TAPD_BASE_URL", false, func(c *Config) *string { return &c.TAPD.BaseURL }),
	strField("tapd.api_user", "TAPD_MIRROR_TAPD_API_USER", false, func(c *Config) *string { return &c.TAPD.APIUser }),
	strField("tapd.api_password", "TAPD_MIRROR_TAPD_API_PASSWORD", true, func(c *Config) *string { return &c.TAPD.APIPassword }),
	strField("tapd.access_token", "TAPD_MIRROR_TAPD_ACCESS_TOKEN", true, func(c *Config) *string { return &c.TAPD.AccessToken }),
	strField("tapd.client_id", "TAPD_MIRROR_TAPD_CLIENT_ID", false, func(c *Config) *string { return &c.TAPD.ClientID }),
	strField("tapd.client_secret", "TAPD_MIRROR_TAPD_CLIENT_SECRET", true, func(c *Config) *string { return &c.TAPD.ClientSecret }),
	intField("tapd.page_size", "TAPD_MIRROR_TAPD_PAGE_SIZE", func(c *Config) *int { return &c.TAPD.PageSize }),
	intField("tapd.requests_per_minute", "TAPD_MIRROR_TAPD_REQUESTS_PER_MINUTE", func(c *Config) *int { return &c.TAPD.RequestsPerMinute }),
	durField("tapd.penalty_max", "TAPD_MIRROR_TAPD_PENALTY_MAX", func(c *Config) *Duration { return &c.TAPD.PenaltyMax }),
	boolField("tapd.allow_insecure", "TAPD_MIRROR_TAPD_ALLOW_INSECURE", func(c *Config) *bool { return &c.TAPD.AllowInsecure }),
	intField("tapd.horizon_days", "TAPD_MIRROR_TAPD_HORIZON_DAYS", func(c *Config) *int { return &c.TAPD.HorizonDays }),
	intField("tapd.split_above", "TAPD_MIRROR_TAPD_SPLIT_ABOVE", func(c *Config) *int { return &c.TAPD.SplitAbove }),
	intField("tapd.paging_cap", "TAPD_MIRROR_TAPD_PAGING_CAP", func(c *Config) *int { return &c.TAPD.PagingCap }),
	listField("sync.workspaces", "TAPD_MIRROR_WORKSPACES", func(c *Config) *[]string { return &c.Sync.Workspaces }),
	durField("sync.interval", "TAPD_MIRROR_SYNC_INTERVAL", func(c *Config) *Duration { return &c.Sync.Interval }),
	durField("sync.overlap", "TAPD_MIRROR_SYNC_OVERLAP", func(c *Config) *Duration { return &c.Sync.Overlap }),
	intField("sync.max_concurrent", "TAPD_MIRROR_SYNC_MAX_CONCURRENT", func(c *Config) *int { return &c.Sync.MaxConcurrent }),
	durField("sync.lease", "TAPD_MIRROR_SYNC_LEASE", func(c *Config) *Duration { return &c.Sync.Lease }),
	durField("sync.settle", "TAPD_MIRROR_SYNC_SETTLE", func(c *Config) *Duration { return &c.Sync.Settle }),
	durField("sync.settle_check", "TAPD_MIRROR_SYNC_SETTLE_CHECK", func(c *Config) *Duration { return &c.Sync.SettleCheck }),
	durField("sync.run_history", "TAPD_MIRROR_SYNC_RUN_HISTORY", func(c *Config) *Duration { return &c.Sync.RunHistory }),
	intField("export.max_concurrent", "TAPD_MIRROR_EXPORT_MAX_CONCURRENT", func(c *Config) *int { return &c.Export.MaxConcurrent }),
	strField("integrity.key_file", "TAPD_MIRROR_INTEGRITY_KEY_FILE", false, func(c *Config) *string { return &c.Integrity.KeyFile }),
	strField("integrity.log_name", "TAPD_MIRROR_INTEGRITY_LOG_NAME", false, func(c *Config) *string { return &c.Integrity.LogName }),
	durField("integrity.checkpoint_interval", "TAPD_MIRROR_INTEGRITY_CHECKPOINT_INTERVAL", func(c *Config) *Duration { return &c.Integrity.CheckpointInterval }),
	durField("integrity.verify_interval", "TAPD_MIRROR_INTEGRITY_VERIFY_INTERVAL", func(c *Config) *Duration { return &c.Integrity.VerifyInterval }),
	strField("integrity.publish_file", "TAPD_MIRROR_INTEGRITY_PUBLISH_FILE", false, func(c *Config) *string { return &c.Integrity.PublishFile }),
	strField("integrity.publish_url", "TAPD_MIRROR_INTEGRITY_PUBLISH_URL", false, func(c *Config) *string { return &c.Integrity.PublishURL }),
	retentionField(),
	strField("backup.dir", "TAPD_MIRROR_BACKUP_DIR", false, func(c *Config) *string { return &c.Backup.Dir }),
	durField("backup.interval", "TAPD_MIRROR_BACKUP_INTERVAL", func(c *Config) *Duration { return &c.Backup.Interval }),
	durField("backup.full_interval", "TAPD_MIRROR_BACKUP_FULL_INTERVAL", func(c *Config) *Duration { return &c.Backup.FullInterval }),
	intField("backup.keep", "TAPD_MIRROR_BACKUP_KEEP", func(c *Config) *int { return &c.Backup.Keep }),
}, accessFields()...)

func strField(key, env string, secret bool, p func(*Config) *string) Field {
	return Field{Key: key, Env: env, Secret: secret,
		set: func(c *Config, v string) error { *p(c) = v; return nil },
		get: func(c *Config) string { return *p(c) }}
}

func intField(key, env string, p func(*Config) *int) Field {
	return Field{Key: key, Env: env,
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%q is not a whole number", v)
			}
			*p(c) = n
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(*p(c)) }}
}

func boolField(key, env string, p func(*Config) *bool) Field {
	return Field{Key: key, Env: env,
		set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%q is not true or false", v)
			}
			*p(c) = b
			return nil
		},
		get: func(c *Config) string { return strconv.FormatBool(*p(c)) }}
}

// listField is a YAML list; its env form is comma-separated.
func listField(key, env string, p func(*Config) *[]string) Field {
	return Field{Key: key, Env: env,
		set: func(c *Config, v string) error {
			*p(c) = nil
			for _, item := range strings.Split(v, ",") {
				if item = strings.TrimSpace(item); item != "" {
					*p(c) = append(*p(c), item)
				}
			}
			return nil
		},
		get: func(c *Config) string { return strings.Join(*p(c), ",") }}
}

func durField(key, env string, p func(*Config) *Duration) Field {
	return Field{Key: key, Env: env,
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%q is not a duration like 10m or 90s", v)
			}
			p(c).Duration = d
			return nil
		},
		get: func(c *Config) string { return p(c).String() }}
}

// Load reads the optional YAML file at path (empty: none), then applies the
// environment through getenv (os.Getenv when nil). It does not validate.
func Load(path string, getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := Default()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("reading config file: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true) // a misspelt key is an error, not a silent default
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("parsing config file %s: %w", path, err)
		}
	}
	var errs []error
	for _, f := range Fields {
		v, ok := lookup(getenv, f.Env)
		if !ok {
			continue
		}
		if err := f.set(&c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w (%s)", f.Key, err, f.Env))
		}
	}
	return c, errors.Join(errs...)
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// Validate returns every problem at once, each naming the key and env var.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s (%s)", key, fmt.Sprintf(format, args...), envOf(key)))
	}
	primary, _, err := ParseDatabaseURL(c.DatabaseURL)
	if err != nil {
		bad("database_url", "%v", err)
	}
	if c.DatabaseReadURL != "" {
		if replica, _, err := ParseDatabaseURL(c.DatabaseReadURL); err != nil {
			bad("database_read_url", "%v", err)
		} else if replica != Postgres || primary != Postgres {
			bad("database_read_url", "a read replica needs PostgreSQL for both database_url and database_read_url")
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not host:port", c.Listen)
	}
	for _, h := range c.AllowedHosts {
		if h != "*" && (h == "" || strings.ContainsAny(h, "/ @") || (strings.Contains(h, ":") && net.ParseIP(strings.Trim(h, "[]")) == nil)) {
			bad("allowed_hosts", "%q is not a host name; give names without scheme or port (any port is allowed), or * to accept any Host", h)
		}
	}
	c.validateAuth(bad, c.PublicListen())
	if _, err := time.LoadLocation(c.Timezone); err != nil || c.Timezone == "" {
		bad("timezone", "%q is not an IANA time zone such as Asia/Shanghai", c.Timezone)
	}
	if u, err := url.Parse(c.TAPD.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("tapd.base_url", "%s is not an http(s) URL", RedactURL(c.TAPD.BaseURL))
	} else if u.Scheme != "https" && !isLoopback(u.Hostname()) && !c.TAPD.AllowInsecure {
		bad("tapd.base_url", "%s is plain http, so TAPD credentials would cross the network unencrypted; use https://, or set tapd.allow_insecure: true (TAPD_MIRROR_TAPD_ALLOW_INSECURE) to accept that", RedactURL(c.TAPD.BaseURL))
	}
	if (c.TAPD.APIUser == "") != (c.TAPD.APIPassword == "") {
		bad("tapd.api_user", "api_user and api_password must be set together")
	}
	if (c.TAPD.ClientID == "") != (c.TAPD.ClientSecret == "") {
		bad("tapd.client_id", "client_id and client_secret must be set together")
	}
	if methods := c.TAPDAuthMethods(); len(methods) > 1 {
		bad("tapd.access_token", "exactly one TAPD auth method may be set, found %s", strings.Join(methods, " and "))
	} else if len(c.Sync.Workspaces) > 0 && len(methods) == 0 {
		bad("tapd.api_user", "workspaces are configured but no TAPD credentials are set (api_user/api_password, access_token, or client_id/client_secret)")
	}
	if c.TAPD.PageSize < 1 || c.TAPD.PageSize > 200 {
		bad("tapd.page_size", "%d is outside 1..200 (TAPD caps pages at 200)", c.TAPD.PageSize)
	}
	if c.TAPD.PenaltyMax.Duration < time.Minute {
		bad("tapd.penalty_max", "%v is below the first pause after a 429 (1m)", c.TAPD.PenaltyMax.Duration)
	}
	if c.TAPD.RequestsPerMinute < 1 {
		bad("tapd.requests_per_minute", "%d must be at least 1", c.TAPD.RequestsPerMinute)
	}
	for _, w := range c.Sync.Workspaces {
		if _, err := ParseWorkspace(w); err != nil {
			bad("sync.workspaces", "%v", err)
		}
	}
	if c.Sync.Interval.Duration < time.Second {
		bad("sync.interval", "%s is too short (at least 1s)", c.Sync.Interval)
	}
	if c.Sync.Overlap.Duration < time.Minute {
		bad("sync.overlap", "%s is too short: TAPD works in minutes, so at least 1m", c.Sync.Overlap)
	}
	if c.TAPD.HorizonDays < 1 {
		bad("tapd.horizon_days", "%d must be at least 1", c.TAPD.HorizonDays)
	}
	if c.TAPD.PagingCap < c.TAPD.PageSize {
		bad("tapd.paging_cap", "%d is below one page (tapd.page_size %d)", c.TAPD.PagingCap, c.TAPD.PageSize)
	}
	if c.TAPD.SplitAbove < 1 || c.TAPD.SplitAbove > c.TAPD.PagingCap {
		bad("tapd.split_above", "%d must be within 1..tapd.paging_cap (%d)", c.TAPD.SplitAbove, c.TAPD.PagingCap)
	}
	if c.Sync.MaxConcurrent < 1 {
		bad("sync.max_concurrent", "%d must be at least 1", c.Sync.MaxConcurrent)
	}
	if c.Sync.Lease.Duration < 10*time.Second {
		bad("sync.lease", "%s is too short (at least 10s; it is renewed every third of it)", c.Sync.Lease)
	}
	if c.Sync.Settle.Duration < 0 || c.Sync.SettleCheck.Duration < time.Minute {
		bad("sync.settle_check", "settle must not be negative and settle_check must be at least 1m")
	}
	if c.Sync.RunHistory.Duration < 24*time.Hour {
		bad("sync.run_history", "%s is too short (at least 24h)", c.Sync.RunHistory)
	}
	c.validateIntegrity(bad)
	c.validateBackup(bad)
	c.validateForward(bad)
	c.validateAlerts(bad)
	c.validateAccessLog(bad)
	if c.Export.MaxConcurrent < 1 || c.Export.MaxConcurrent > 16 {
		bad("export.max_concurrent", "%d is outside 1..16 (each running export holds one database connection)", c.Export.MaxConcurrent)
	}
	return errors.Join(errs...)
}

func envOf(key string) string {
	for _, f := range Fields {
		if f.Key == key {
			return f.Env
		}
	}
	return "config file only"
}

// PublicListen reports whether listen is reachable from other machines.
func (c Config) PublicListen() bool {
	host, _, err := net.SplitHostPort(c.Listen)
	return err == nil && !isLoopback(host)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ServedHosts are the Host names the API answers to besides localhost and IP
// addresses: allowed_hosts and the listen host.
func (c Config) ServedHosts() []string {
	out := append([]string(nil), c.AllowedHosts...)
	if host, _, err := net.SplitHostPort(c.Listen); err == nil && host != "" {
		out = append(out, host)
	}
	return out
}

// TAPDAuthMethods names the TAPD auth methods configured (valid: exactly one).
func (c Config) TAPDAuthMethods() []string {
	var out []string
	if c.TAPD.APIUser != "" || c.TAPD.APIPassword != "" {
		out = append(out, "api_user/api_password (Basic)")
	}
	if c.TAPD.AccessToken != "" {
		out = append(out, "access_token (Bearer)")
	}
	if c.TAPD.ClientID != "" || c.TAPD.ClientSecret != "" {
		out = append(out, "client_id/client_secret (OAuth app, renewed before expiry)")
	}
	return out
}

// Location returns the loaded TAPD time zone; call after Validate.
func (c Config) Location() *time.Location {
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil {
		return time.FixedZone("UTC+8", 8*3600)
	}
	return loc
}

// Redacted returns "key = value" lines for every setting, secrets masked.
func (c Config) Redacted() string {
	var b strings.Builder
	for _, f := range Fields {
		v := f.get(&c)
		switch {
		case f.Key == "database_url" || (f.Key == "database_read_url" && v != ""):
			v = RedactDatabaseURL(v)
		case f.Key == "tapd.base_url":
			v = RedactURL(v)
		case slices.Contains(destinationURLKeys, f.Key):
			v, _ = RedactDestinationURL(v)
		case f.Secret && v != "":
			v = "****"
		}
		fmt.Fprintf(&b, "%-26s = %s\n", f.Key, v)
	}
	for i, t := range c.Auth.Tokens {
		tok := "****"
		if t.Token == "" {
			tok = ""
		}
		fmt.Fprintf(&b, "%-26s = name=%s scope=%s token=%s\n", fmt.Sprintf("auth.tokens[%d]", i), t.Name, t.Scope, tok)
	}
	for _, l := range c.forwardLines() {
		b.WriteString(l + "\n")
	}
	for _, l := range c.alertLines() {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// Dialects tapd-mirror can store into.
const (
	Postgres = "postgres"
	SQLite   = "sqlite"
)

// ParseDatabaseURL splits database_url into a dialect and a driver DSN.
// PostgreSQL takes a postgres:// URL, one with a host list
// (postgres://u@h1:6001,h2:6002/db, converted to the keyword form the driver
// reads right) or a libpq keyword DSN ("host=h1,h2 port=6001,6002 …").
func ParseDatabaseURL(raw string) (dialect, dsn string, err error) {
	if dsn, ok, err := postgresDSN(raw); ok {
		if err != nil {
			return "", "", err
		}
		return Postgres, dsn, nil
	}
	if strings.HasPrefix(raw, "sqlite:") {
		path := strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//")
		if path == "" {
			return "", "", fmt.Errorf("%q has no file path (use sqlite:PATH)", raw)
		}
		return SQLite, path, nil
	}
	return "", "", fmt.Errorf("%s must start with postgres:// or sqlite:, or be a libpq keyword DSN (host=… dbname=…)", RedactDatabaseURL(raw))
}

// Workspace is one unit of sync as configured.
type Workspace struct {
	// Key is the configured form ("123", "company:1", "projects:1").
	Key string
	// ID is the TAPD workspace (project or company) id.
	ID string
	// CompanyOnly asks TAPD for company-level logs only.
	CompanyOnly bool
	// ExpandProjects means "every project of company ID".
	ExpandProjects bool
	// CompanyWide means "the whole company through one company-wide query"
	// (all:ID): far fewer TAPD requests than one stream per project.
	CompanyWide bool
}

// ParseWorkspace parses "ID", "company:ID", "projects:ID" or "all:ID".
func ParseWorkspace(s string) (Workspace, error) {
	kind, id, found := strings.Cut(strings.TrimSpace(s), ":")
	if !found {
		kind, id = "", kind
	}
	if id == "" || strings.Trim(id, "0123456789") != "" {
		return Workspace{}, fmt.Errorf("workspace %q: id must be digits (forms: ID, company:ID, projects:ID, all:ID)", s)
	}
	w := Workspace{Key: s, ID: id}
	switch kind {
	case "":
	case "company":
		w.CompanyOnly = true
	case "projects":
		w.ExpandProjects = true
	case "all":
		w.CompanyWide = true
	default:
		return Workspace{}, fmt.Errorf("workspace %q: unknown prefix %q (forms: ID, company:ID, projects:ID, all:ID)", s, kind)
	}
	return w, nil
}
