package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tapd-mirror/tapd-mirror/config"
)

func loadYAML(t *testing.T, raw string) (config.Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path, env(nil))
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

// TestForwardConfigInTheIssuesShape: the documented shape loads, and every
// secret of a destination is masked in config check and scrubbed from logs.
func TestForwardConfigInTheIssuesShape(t *testing.T) {
	c, err := loadYAML(t, `
forward:
  - name: siem
    kind: webhook
    url: https://user:pw1@siem.example/ingest?key=k3y
    secret: "hmac-s3cret"
    format: json
    filter: {source: tapd, action_type: download}
  - name: lake
    kind: file
    path: /var/lib/tapd-mirror/out
  - name: splunk
    kind: splunk_hec
    url: https://splunk.example:8088
    token: "hec-t0ken"
    index: audit
  - name: qradar
    kind: syslog
    address: siem.example:6514
    tls: true
    ca_file: /etc/ssl/siem-ca.pem
    cert_file: /etc/tapd-mirror/client.pem
    key_file: /etc/tapd-mirror/client-key.pem
    format: cef
`)
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Forward[2].WithDefaults(); d.Source != "tapd-mirror" || d.Sourcetype != "tapd:mirror" || d.Host == "" {
		t.Errorf("splunk_hec defaults %+v", d)
	}
	if d := c.Forward[3].WithDefaults(); d.Facility == nil || *d.Facility != 13 {
		t.Errorf("syslog defaults %+v", d)
	}
	if len(c.Forward) != 4 || c.Forward[0].Filter.ActionType != "download" || c.Forward[1].Path != "/var/lib/tapd-mirror/out" {
		t.Fatalf("loaded %+v", c.Forward)
	}
	if d := c.Forward[1].WithDefaults(); d.DeadAfter.Hours() != 24 || d.Format != "json" {
		t.Fatalf("defaults %+v", d)
	}
	shown := c.Redacted()
	for _, s := range []string{"hmac-s3cret", "k3y", "pw1", "hec-t0ken", "/etc/tapd-mirror/client-key.pem"} {
		if strings.Contains(shown, s) {
			t.Errorf("config check shows %q:\n%s", s, shown)
		}
		if !slices.Contains(c.Secrets(), s) {
			t.Errorf("secrets lack %q", s)
		}
	}
	if !strings.Contains(shown, "forward[0]") || !strings.Contains(shown, "kind=webhook") || !strings.Contains(shown, "siem.example") ||
		!strings.Contains(shown, "address=siem.example:6514 tls=true") || !strings.Contains(shown, "key_file=****") {
		t.Errorf("config check does not show the destination:\n%s", shown)
	}
}

func TestForwardConfigRefusesWhatCannotWork(t *testing.T) {
	for raw, want := range map[string]string{
		"forward:\n  - {name: s, kind: splunk_hec, url: 'https://s.example'}\n":                        "needs token",
		"forward:\n  - {name: s, kind: splunk_hec, url: 'https://s.example', token: t, secret: x}\n":   "not used by kind splunk_hec",
		"forward:\n  - {name: s, kind: syslog, address: 's.example'}\n":                                "not host:port",
		"forward:\n  - {name: s, kind: syslog, address: 's.example:514'}\n":                            "without tls",
		"forward:\n  - {name: s, kind: syslog, address: 's.example:6514', tls: true, cert_file: /c}\n": "go together",
		"forward:\n  - {name: s, kind: syslog, address: '127.0.0.1:514', facility: 24}\n":              "outside 0..23",
		"forward:\n  - {name: s, kind: webhook, url: 'https://h.example', secret: x, format: cef}\n":   "cef is for syslog",
		"forward:\n  - {name: s, kind: file, path: /x, gzip: true}\n":                                  "not used by kind file",
		"forward:\n  - {name: s, kind: kafka}\n":                                                       "not a destination kind",
		"forward:\n  - {name: s, kind: webhook, url: 'https://h.example'}\n":                           "needs a secret",
		"forward:\n  - {name: s, kind: webhook, url: 'http://h.example', secret: x}\n":                 "plain http",
		"forward:\n  - {name: s, kind: webhook, url: 'ftp://h', secret: x}\n":                          "not an http(s) URL",
		"forward:\n  - {name: s, kind: file}\n":                                                        "needs path",
		"forward:\n  - {name: s, kind: file, path: /x, format: xml}\n":                                 "not a format",
		"forward:\n  - {name: s, kind: file, path: /x, secret: x}\n":                                   "not used by kind file",
		"forward:\n  - {name: s, kind: file, path: /x}\n  - {name: s, kind: file, path: /y}\n":         "unique",
		"forward:\n  - {name: 'Bad Name', kind: file, path: /x}\n":                                     "lowercase",
	} {
		_, err := loadYAML(t, raw)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error saying %q", raw, err, want)
		}
	}
	if _, err := loadYAML(t, "forward:\n  - {name: local, kind: webhook, url: 'http://127.0.0.1:9/in', secret: x}\n"); err != nil {
		t.Errorf("plain http to loopback refused: %v", err)
	}
}

// A webhook destination whose key is in its path (Slack-style) shows the
// host and first segment only, in config check and in scrubbed log lines.
func TestForwardWebhookPathSecretMasked(t *testing.T) {
	c, err := loadYAML(t, `forward:
  - {name: siem, kind: webhook, url: "https://hooks.slack.example/services/T0001/B0002/Fw3bh00kK3y", secret: "hmac-k3y-9"}
`)
	if err != nil {
		t.Fatal(err)
	}
	shown := c.Redacted()
	if !strings.Contains(shown, "url=https://hooks.slack.example/services/…") {
		t.Errorf("config check lacks the masked URL:\n%s", shown)
	}
	for _, s := range []string{"Fw3bh00kK3y", "B0002", "hmac-k3y-9"} {
		if strings.Contains(shown, s) {
			t.Errorf("config check shows %q:\n%s", s, shown)
		}
	}
	logged := "delivering to https://hooks.slack.example/services/T0001/B0002/Fw3bh00kK3y: 500"
	if got := config.Scrub(logged, c.Secrets()...); strings.Contains(got, "Fw3bh00kK3y") {
		t.Errorf("scrubbed log line %q", got)
	}
}
