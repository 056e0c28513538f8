package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Forward is one destination the integrity log's events are delivered to
// (README "Forwarding"). The shape is fixed by issue 22 so that operators'
// files stay valid as kinds are added; only webhook and file are built.
type Forward struct {
	Name    string        `yaml:"name"`
	Kind    string        `yaml:"kind"`
	URL     string        `yaml:"url"`     // webhook, splunk_hec
	Secret  string        `yaml:"secret"`  // webhook: HMAC-SHA256 key
	Token   string        `yaml:"token"`   // splunk_hec
	Address string        `yaml:"address"` // syslog
	TLS     bool          `yaml:"tls"`     // syslog
	Path    string        `yaml:"path"`    // file: the directory written to
	Format  string        `yaml:"format"`  // json (the default); cef and ocsf are not built
	Filter  ForwardFilter `yaml:"filter"`
	// DeadAfter is how long deliveries may fail before the destination is
	// marked failing (default 24h).
	DeadAfter Duration `yaml:"dead_after"`
	// BatchSize is the most events per delivery (default 500).
	BatchSize int `yaml:"batch_size"`
	// file: a file is closed (renamed to its final name) once it holds
	// RotateBytes (default 64 MiB) or has been open RotateAge (default 1h).
	RotateBytes int64    `yaml:"rotate_bytes"`
	RotateAge   Duration `yaml:"rotate_age"`
}

// ForwardFilter selects the record and update events a destination gets;
// empty fields match anything. Deletions, purges and holds always pass, so
// the destination's copy can be reconciled.
type ForwardFilter struct {
	Source     string `yaml:"source"`
	Serial     string `yaml:"serial"`
	ActionType string `yaml:"action_type"`
	Object     string `yaml:"object"`
	Username   string `yaml:"username"`
}

// Forward kinds.
const (
	ForwardWebhook   = "webhook"
	ForwardSplunkHEC = "splunk_hec"
	ForwardSyslog    = "syslog"
	ForwardFile      = "file"
)

// Defaults of a destination's optional settings.
const (
	DefaultForwardDeadAfter   = 24 * time.Hour
	DefaultForwardBatchSize   = 500
	DefaultForwardRotateBytes = 64 << 20
	DefaultForwardRotateAge   = time.Hour
)

var forwardName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// WithDefaults fills a destination's unset optional settings.
func (f Forward) WithDefaults() Forward {
	if f.DeadAfter.Duration == 0 {
		f.DeadAfter.Duration = DefaultForwardDeadAfter
	}
	if f.BatchSize == 0 {
		f.BatchSize = DefaultForwardBatchSize
	}
	if f.RotateBytes == 0 {
		f.RotateBytes = DefaultForwardRotateBytes
	}
	if f.RotateAge.Duration == 0 {
		f.RotateAge.Duration = DefaultForwardRotateAge
	}
	if f.Format == "" {
		f.Format = "json"
	}
	return f
}

func (c Config) validateForward(bad func(key, format string, args ...any)) {
	seen := map[string]bool{}
	for i, f := range c.Forward {
		key := fmt.Sprintf("forward[%d]", i)
		if f.Name != "" {
			key = fmt.Sprintf("forward[%d] (%s)", i, f.Name)
		}
		switch {
		case !forwardName.MatchString(f.Name):
			bad(key+".name", "%q must be 1-63 lowercase letters, digits, _ or - (it names the destination in metrics and status)", f.Name)
		case seen[f.Name]:
			bad(key+".name", "%q is used by another destination; names must be unique", f.Name)
		}
		seen[f.Name] = true
		unused := func(field string, set bool) {
			if set {
				bad(key+"."+field, "is not used by kind %s; remove it", f.Kind)
			}
		}
		switch f.Kind {
		case ForwardWebhook:
			shown, _ := RedactDestinationURL(f.URL)
			if u, err := url.Parse(f.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad(key+".url", "%q is not an http(s) URL (a webhook needs one)", shown)
			} else if u.Scheme != "https" && !isLoopback(u.Hostname()) {
				bad(key+".url", "%s is plain http to another machine, so records would cross the network unencrypted; use https://", shown)
			}
			if f.Secret == "" {
				bad(key+".secret", "a webhook needs a secret: its HMAC-SHA256 key, so the receiver can tell deliveries are ours")
			}
			unused("path", f.Path != "")
			unused("rotate_bytes", f.RotateBytes != 0)
			unused("rotate_age", f.RotateAge.Duration != 0)
		case ForwardFile:
			if f.Path == "" {
				bad(key+".path", "a file destination needs path: the directory its NDJSON files are written to")
			}
			unused("url", f.URL != "")
			unused("secret", f.Secret != "")
			if f.RotateBytes < 0 || f.RotateAge.Duration < 0 {
				bad(key+".rotate_bytes", "rotate_bytes and rotate_age must not be negative")
			}
		case ForwardSplunkHEC, ForwardSyslog:
			bad(key+".kind", "%s is not supported yet (only webhook and file are built; see README \"Forwarding\")", f.Kind)
			continue
		default:
			bad(key+".kind", "%q is not a destination kind (webhook, file; splunk_hec and syslog are not supported yet)", f.Kind)
			continue
		}
		unused("token", f.Token != "")
		unused("address", f.Address != "")
		unused("tls", f.TLS)
		switch f.Format {
		case "", "json":
		case "cef", "ocsf":
			bad(key+".format", "%s is not supported yet (only json is built)", f.Format)
		default:
			bad(key+".format", "%q is not a format (json)", f.Format)
		}
		if f.DeadAfter.Duration < 0 {
			bad(key+".dead_after", "%s must not be negative", f.DeadAfter)
		}
		if f.BatchSize < 0 || f.BatchSize > 10000 {
			bad(key+".batch_size", "%d is outside 1..10000", f.BatchSize)
		}
	}
}

// forwardLines are the destinations for Redacted, secrets masked.
func (c Config) forwardLines() []string {
	var out []string
	for i, f := range c.Forward {
		f = f.WithDefaults()
		parts := []string{"name=" + f.Name, "kind=" + f.Kind}
		if f.URL != "" {
			shown, _ := RedactDestinationURL(f.URL)
			parts = append(parts, "url="+shown)
		}
		if f.Secret != "" {
			parts = append(parts, "secret=****")
		}
		if f.Token != "" {
			parts = append(parts, "token=****")
		}
		if f.Path != "" {
			parts = append(parts, "path="+f.Path)
		}
		parts = append(parts, "format="+f.Format, "dead_after="+f.DeadAfter.String())
		if flt := f.Filter; flt != (ForwardFilter{}) {
			parts = append(parts, fmt.Sprintf("filter={source:%q serial:%q action_type:%q object:%q username:%q}",
				flt.Source, flt.Serial, flt.ActionType, flt.Object, flt.Username))
		}
		out = append(out, fmt.Sprintf("%-26s = %s", fmt.Sprintf("forward[%d]", i), strings.Join(parts, " ")))
	}
	return out
}

// forwardSecrets are the destinations' secrets for log scrubbing.
func (c Config) forwardSecrets() []string {
	var out []string
	for _, f := range c.Forward {
		out = append(out, f.Secret, f.Token)
		_, s := RedactDestinationURL(f.URL)
		out = append(out, s...)
	}
	return out
}
