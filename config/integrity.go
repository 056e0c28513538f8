package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Integrity configures the verifiable archive: the checkpoint signing key,
// how often checkpoints are signed and the database verified, and where
// each new checkpoint is published outside the database.
type Integrity struct {
	// KeyFile is the Ed25519 signing key, created 0600 on first start.
	// Default: tapd-mirror.key beside the SQLite file, or in the working
	// directory with PostgreSQL (see IntegrityKeyFile).
	KeyFile string `yaml:"key_file"`
	// LogName names the log (and the key) when the key is created.
	LogName            string   `yaml:"log_name"`
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	VerifyInterval     Duration `yaml:"verify_interval"`
	// PublishFile gets each new checkpoint appended; PublishURL gets it POSTed.
	PublishFile string `yaml:"publish_file"`
	PublishURL  string `yaml:"publish_url"`
}

// DefaultKeyFile is the signing key's file name when integrity.key_file is unset.
const DefaultKeyFile = "tapd-mirror.key"

// IntegrityKeyFile is integrity.key_file, or tapd-mirror.key beside the
// SQLite file, or in the working directory for PostgreSQL.
func (c Config) IntegrityKeyFile() string {
	if c.Integrity.KeyFile != "" {
		return c.Integrity.KeyFile
	}
	if dialect, path, err := ParseDatabaseURL(c.DatabaseURL); err == nil && dialect == SQLite {
		return filepath.Join(filepath.Dir(path), DefaultKeyFile)
	}
	return DefaultKeyFile
}

// Period is a retention period: a Go duration or a number of days ("400d").
// Zero means forever.
type Period struct{ time.Duration }

// ParsePeriod reads "400d", "9600h" or "forever".
func ParsePeriod(s string) (Period, error) {
	s = strings.TrimSpace(s)
	if s == "forever" || s == "0" {
		return Period{}, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return Period{}, fmt.Errorf("%q is not a period like 400d, 9600h or forever", s)
		}
		return Period{time.Duration(n) * 24 * time.Hour}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return Period{}, fmt.Errorf("%q is not a period like 400d, 9600h or forever", s)
	}
	return Period{d}, nil
}

func (p Period) String() string {
	switch {
	case p.Duration == 0:
		return "forever"
	case p.Duration%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", p.Duration/(24*time.Hour))
	}
	return p.Duration.String()
}

// UnmarshalYAML accepts what ParsePeriod does.
func (p *Period) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParsePeriod(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*p = v
	return nil
}

// MarshalYAML writes the period back as ParsePeriod reads it.
func (p Period) MarshalYAML() (any, error) { return p.String(), nil }

// Retention is how long records of each source are kept ("local", "tapd");
// a source not listed is kept forever.
type Retention map[string]Period

// Sources lists the sources that have a retention period, sorted.
func (r Retention) Sources() []string {
	var out []string
	for src, p := range r {
		if p.Duration > 0 {
			out = append(out, src)
		}
	}
	slices.Sort(out)
	return out
}

func (r Retention) String() string {
	var parts []string
	for _, src := range r.Sources() {
		parts = append(parts, src+"="+r[src].String())
	}
	return strings.Join(parts, ",")
}

// retentionField is the retention map; env form "local=400d,tapd=3650d".
func retentionField() Field {
	return Field{Key: "retention", Env: "TAPD_MIRROR_RETENTION",
		set: func(c *Config, v string) error {
			r := Retention{}
			for _, item := range strings.Split(v, ",") {
				if item = strings.TrimSpace(item); item == "" {
					continue
				}
				src, period, ok := strings.Cut(item, "=")
				if !ok {
					return fmt.Errorf("%q is not source=period (e.g. local=400d)", item)
				}
				p, err := ParsePeriod(period)
				if err != nil {
					return err
				}
				r[strings.TrimSpace(src)] = p
			}
			c.Retention = r
			return nil
		},
		get: func(c *Config) string { return c.Retention.String() }}
}

// validateIntegrity checks the integrity and retention settings.
func (c Config) validateIntegrity(bad func(key, format string, args ...any)) {
	if n := c.Integrity.LogName; n == "" || strings.ContainsAny(n, "+ \t\n") {
		bad("integrity.log_name", "%q must be a non-empty name without spaces or '+' (a host name suits)", n)
	}
	if c.Integrity.CheckpointInterval.Duration < time.Second {
		bad("integrity.checkpoint_interval", "%s is too short (at least 1s)", c.Integrity.CheckpointInterval)
	}
	if c.Integrity.VerifyInterval.Duration < time.Minute {
		bad("integrity.verify_interval", "%s is too short (at least 1m)", c.Integrity.VerifyInterval)
	}
	if raw := c.Integrity.PublishURL; raw != "" {
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			shown, _ := RedactDestinationURL(raw)
			bad("integrity.publish_url", "%s is not an http(s) URL", shown)
		}
	}
	for src, p := range c.Retention {
		switch {
		case src != "local" && src != "tapd":
			bad("retention", "unknown source %q (sources: local, tapd)", src)
		case p.Duration > 0 && p.Duration < 24*time.Hour:
			bad("retention", "%s=%s is shorter than a day", src, p)
		case src == "tapd" && p.Duration > 0 && p.Duration < time.Duration(c.TAPD.HorizonDays)*24*time.Hour:
			bad("retention", "tapd=%s would purge records TAPD still serves (tapd.horizon_days %d): a sync would fetch them again; keep tapd records at least %dd",
				p, c.TAPD.HorizonDays, c.TAPD.HorizonDays)
		}
	}
}
