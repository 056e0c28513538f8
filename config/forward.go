package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// Forward is one destination the integrity log's events are delivered to
// (README "Forwarding"). The shape is fixed by issue 22 so that operators'
// files stay valid as kinds are added.
type Forward struct {
	Name    string        `yaml:"name"`
	Kind    string        `yaml:"kind"`
	URL     string        `yaml:"url"`     // webhook, splunk_hec
	Secret  string        `yaml:"secret"`  // webhook: HMAC-SHA256 key
	Token   string        `yaml:"token"`   // splunk_hec
	Address string        `yaml:"address"` // syslog
	TLS     bool          `yaml:"tls"`     // syslog
	Path    string        `yaml:"path"`    // file: the directory written to
	Format  string        `yaml:"format"`  // json (the default), cef (syslog), ocsf
	Filter  ForwardFilter `yaml:"filter"`
	// webhook: Gzip compresses each body (Content-Encoding: gzip); the
	// signature is over the bytes sent.
	Gzip bool `yaml:"gzip"`
	// splunk_hec: the metadata of each event; Host defaults to this
	// machine's name, Source to tapd-mirror, Sourcetype to tapd:mirror,
	// Index to the token's default index (omitted).
	Host       string `yaml:"host"`
	Source     string `yaml:"source"`
	Sourcetype string `yaml:"sourcetype"`
	Index      string `yaml:"index"`
	// syslog: Facility of every message (default 13, log audit); with tls,
	// CAFile verifies the receiver (default: the system's roots),
	// CertFile/KeyFile are a client certificate, ServerName overrides the
	// name checked, InsecureSkipVerify checks nothing (tests only).
	Facility           *int   `yaml:"facility"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
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
	DefaultForwardFacility    = 13 // log audit (RFC 5424 §6.2.1)
	DefaultForwardSource      = "tapd-mirror"
	DefaultForwardSourcetype  = "tapd:mirror"
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
	if f.Kind == ForwardSplunkHEC {
		if f.Host == "" {
			f.Host, _ = os.Hostname()
		}
		if f.Source == "" {
			f.Source = DefaultForwardSource
		}
		if f.Sourcetype == "" {
			f.Sourcetype = DefaultForwardSourcetype
		}
	}
	if f.Kind == ForwardSyslog && f.Facility == nil {
		n := DefaultForwardFacility
		f.Facility = &n
	}
	return f
}

// checkName returns the key of list[i] for messages, after checking its
// name: the form names take (purpose: what it names the item in) and that
// no other item (noun) of the list has it.
func checkName(bad func(key, format string, args ...any), seen map[string]bool, list string, i int, name, noun, purpose string) string {
	key := fmt.Sprintf("%s[%d]", list, i)
	if name != "" {
		key = fmt.Sprintf("%s[%d] (%s)", list, i, name)
	}
	switch {
	case !forwardName.MatchString(name):
		bad(key+".name", "%q must be 1-63 lowercase letters, digits, _ or - (%s)", name, purpose)
	case seen[name]:
		bad(key+".name", "%q is used by another %s; names must be unique", name, noun)
	}
	seen[name] = true
	return key
}

func (c Config) validateForward(bad func(key, format string, args ...any)) {
	seen := map[string]bool{}
	for i, f := range c.Forward {
		key := checkName(bad, seen, "forward", i, f.Name, "destination", "it names the destination in metrics and status")
		unused := func(field string, set bool) {
			if set {
				bad(key+"."+field, "is not used by kind %s; remove it", f.Kind)
			}
		}
		switch f.Kind {
		case ForwardWebhook, ForwardSplunkHEC:
			shown, _ := RedactForwardURL(f.Kind, f.URL)
			if u, err := url.Parse(f.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad(key+".url", "%q is not an http(s) URL (a %s destination needs one)", shown, f.Kind)
			} else if u.Scheme != "https" && !isLoopback(u.Hostname()) {
				bad(key+".url", "%s is plain http to another machine, so records would cross the network unencrypted; use https://", shown)
			}
			if f.Kind == ForwardWebhook && f.Secret == "" {
				bad(key+".secret", "a webhook needs a secret: its HMAC-SHA256 key, so the receiver can tell deliveries are ours")
			}
			if f.Kind == ForwardSplunkHEC {
				if f.Token == "" {
					bad(key+".token", "a splunk_hec destination needs token: the HTTP Event Collector token")
				}
				unused("secret", f.Secret != "")
				unused("gzip", f.Gzip)
			} else {
				unused("token", f.Token != "")
			}
			unused("address", f.Address != "")
			unused("path", f.Path != "")
		case ForwardSyslog:
			if _, port, err := net.SplitHostPort(f.Address); err != nil || port == "" {
				bad(key+".address", "%q is not host:port (a syslog destination needs the receiver's TCP address, e.g. siem.example:6514)", f.Address)
			}
			if !f.TLS && !isLoopback(hostOf(f.Address)) {
				bad(key+".tls", "syslog to %s without tls would send records across the network unencrypted; set tls: true (RFC 5425)", f.Address)
			}
			if (f.CertFile == "") != (f.KeyFile == "") {
				bad(key+".cert_file", "cert_file and key_file go together (the client certificate and its key)")
			}
			if !f.TLS {
				unused("ca_file", f.CAFile != "")
				unused("cert_file", f.CertFile != "")
				unused("key_file", f.KeyFile != "")
				unused("server_name", f.ServerName != "")
				unused("insecure_skip_verify", f.InsecureSkipVerify)
			}
			if f.Facility != nil && (*f.Facility < 0 || *f.Facility > 23) {
				bad(key+".facility", "%d is outside 0..23 (RFC 5424 facilities)", *f.Facility)
			}
			unused("url", f.URL != "")
			unused("secret", f.Secret != "")
			unused("token", f.Token != "")
			unused("path", f.Path != "")
			unused("gzip", f.Gzip)
		case ForwardFile:
			if f.Path == "" {
				bad(key+".path", "a file destination needs path: the directory its NDJSON files are written to")
			}
			unused("url", f.URL != "")
			unused("secret", f.Secret != "")
			unused("token", f.Token != "")
			unused("address", f.Address != "")
			unused("gzip", f.Gzip)
			if f.RotateBytes < 0 || f.RotateAge.Duration < 0 {
				bad(key+".rotate_bytes", "rotate_bytes and rotate_age must not be negative")
			}
		default:
			bad(key+".kind", "%q is not a destination kind (webhook, splunk_hec, syslog, file)", f.Kind)
			continue
		}
		if f.Kind != ForwardSyslog {
			unused("tls", f.TLS)
			unused("facility", f.Facility != nil)
			unused("ca_file", f.CAFile != "")
			unused("cert_file", f.CertFile != "")
			unused("key_file", f.KeyFile != "")
			unused("server_name", f.ServerName != "")
			unused("insecure_skip_verify", f.InsecureSkipVerify)
		}
		if f.Kind != ForwardFile {
			unused("rotate_bytes", f.RotateBytes != 0)
			unused("rotate_age", f.RotateAge.Duration != 0)
		}
		if f.Kind != ForwardSplunkHEC {
			unused("host", f.Host != "")
			unused("source", f.Source != "")
			unused("sourcetype", f.Sourcetype != "")
			unused("index", f.Index != "")
		}
		switch f.Format {
		case "", "json", "ocsf":
		case "cef":
			if f.Kind != ForwardSyslog {
				bad(key+".format", "cef is for syslog destinations (CEF is a syslog message body); use json or ocsf")
			}
		default:
			bad(key+".format", "%q is not a format (json, ocsf; cef for syslog)", f.Format)
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
			shown, _ := RedactForwardURL(f.Kind, f.URL)
			parts = append(parts, "url="+shown)
		}
		if f.Secret != "" {
			parts = append(parts, "secret=****")
		}
		if f.Token != "" {
			parts = append(parts, "token=****")
		}
		if f.Address != "" {
			parts = append(parts, "address="+f.Address, fmt.Sprintf("tls=%t", f.TLS))
		}
		for _, kv := range [][2]string{{"ca_file", f.CAFile}, {"cert_file", f.CertFile}} {
			if kv[1] != "" {
				parts = append(parts, kv[0]+"="+kv[1])
			}
		}
		if f.KeyFile != "" {
			parts = append(parts, "key_file=****")
		}
		if f.InsecureSkipVerify {
			parts = append(parts, "insecure_skip_verify=true")
		}
		if f.Index != "" {
			parts = append(parts, "index="+f.Index)
		}
		if f.Gzip {
			parts = append(parts, "gzip=true")
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

// RedactForwardURL is a destination's URL as shown in output, logs and
// errors, and the secrets it hides: every query value and the userinfo, and
// for a webhook the path after its first segment too (Slack-, Discord- or
// Teams-style hooks keep their key there).
func RedactForwardURL(kind, raw string) (shown string, secrets []string) {
	shown, secrets = RedactDestinationURL(raw)
	if kind == ForwardWebhook {
		var more []string
		shown, more = RedactURLPath(shown)
		secrets = append(secrets, more...)
	}
	return shown, secrets
}

// forwardSecrets are the destinations' secrets for log scrubbing.
func (c Config) forwardSecrets() []string {
	var out []string
	for _, f := range c.Forward {
		out = append(out, f.Secret, f.Token, f.KeyFile)
		_, s := RedactForwardURL(f.Kind, f.URL)
		out = append(out, s...)
	}
	return out
}

func hostOf(address string) string {
	h, _, err := net.SplitHostPort(address)
	if err != nil {
		return address
	}
	return h
}
