package config_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// TestAlertsConfigInTheIssuesShape: the documented shape loads, the
// default rules stay off until enabled, and every notifier secret (the
// key in a WeCom URL, DingTalk's access_token and signing secret, the
// token in a Feishu path) is masked in config check and scrubbed from logs.
func TestAlertsConfigInTheIssuesShape(t *testing.T) {
	c, err := loadYAML(t, `
alerts:
  timezone: Asia/Shanghai
  notifiers:
    - {name: ops, kind: wecom, url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wc-k3y-0001"}
    - {name: ding, kind: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=dt-t0ken-02", secret: SECdt-s3cret}
    - {name: fs, kind: feishu, url: "https://open.feishu.cn/open-apis/bot/v2/hook/fs-h00k-03", secret: fs-s3cret}
  rules:
    - name: bulk-download
      match: {action_type: download}
      threshold: {count: 100, window: 1h, per: username}
      notify: [ops]
    - name: new-ip
      first_seen: ip
      ignore_older_than: 0s
      notify: [ding, fs]
`)
	if err != nil {
		t.Fatal(err)
	}
	rules := c.Alerts.EffectiveRules()
	if len(rules) != 2 || rules[0].Threshold.Count != 100 || rules[0].Threshold.Window.Duration != time.Hour ||
		rules[0].Suppress.Duration != time.Hour || rules[0].IgnoreOlderThan.Duration != 24*time.Hour ||
		rules[1].Condition() != "first_seen" || rules[1].IgnoreOlderThan.Duration != 0 {
		t.Fatalf("rules %+v", rules)
	}
	shown := c.Redacted()
	for _, s := range []string{"wc-k3y-0001", "dt-t0ken-02", "SECdt-s3cret", "fs-h00k-03", "fs-s3cret"} {
		if strings.Contains(shown, s) {
			t.Errorf("config check shows %q:\n%s", s, shown)
		}
		if !slices.Contains(c.Secrets(), s) {
			t.Errorf("secrets lack %q", s)
		}
	}
	for _, want := range []string{"alerts.notifiers[2]", "open.feishu.cn/open-apis/bot/v2/hook/xxxxx", "key=xxxxx", "name=bulk-download condition=threshold"} {
		if !strings.Contains(shown, want) {
			t.Errorf("config check lacks %q:\n%s", want, shown)
		}
	}
}

func TestAlertDefaultsOffUntilEnabled(t *testing.T) {
	hook := "alerts:\n  notifiers:\n    - {name: ops, kind: webhook, url: 'https://h.example/a'}\n"
	c, err := loadYAML(t, hook)
	if err != nil || len(c.Alerts.EffectiveRules()) != 0 {
		t.Fatalf("rules without defaults.enabled: %+v (%v)", c.Alerts.EffectiveRules(), err)
	}
	c, err = loadYAML(t, hook+"  defaults: {enabled: true, notify: [ops], disable: [after-hours]}\n")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range c.Alerts.EffectiveRules() {
		names = append(names, r.Name)
		if !slices.Equal(r.Notify, []string{"ops"}) {
			t.Errorf("%s notifies %v", r.Name, r.Notify)
		}
	}
	if !slices.Equal(names, []string{"bulk-download", "bulk-delete", "new-ip"}) {
		t.Fatalf("default rules %v", names)
	}
}

func TestAlertsConfigRefusesMistakes(t *testing.T) {
	n := "alerts:\n  notifiers:\n    - {name: ops, kind: webhook, url: 'https://h.example/a'}\n"
	for raw, want := range map[string]string{
		"alerts:\n  notifiers:\n    - {name: ops, kind: wecom, url: 'https://q.example/send'}\n":                   "has no key=",
		"alerts:\n  notifiers:\n    - {name: ops, kind: dingtalk, url: 'https://d.example/robot/send'}\n":          "has no access_token=",
		"alerts:\n  notifiers:\n    - {name: ops, kind: feishu, url: 'https://f.example/x'}\n":                     "not a bot webhook address",
		"alerts:\n  notifiers:\n    - {name: ops, kind: slack, url: 'https://s.example/x'}\n":                      "not a notifier kind",
		"alerts:\n  notifiers:\n    - {name: ops, kind: webhook, url: 'http://h.example/x'}\n":                     "plain http",
		n + "  rules:\n    - {name: r, notify: [nobody]}\n":                                                        "not a notifier",
		n + "  rules:\n    - {name: r, notify: [ops], threshold: {count: 0, window: 1h}}\n":                        "at least 1",
		n + "  rules:\n    - {name: r, notify: [ops], threshold: {count: 3, window: 1h, per: team}}\n":             "not username, ip or serial",
		n + "  rules:\n    - {name: r, notify: [ops], first_seen: device}\n":                                       "not ip",
		n + "  rules:\n    - {name: r, notify: [ops], match: {when: {hours: '9-17'}}}\n":                           "not a span",
		n + "  rules:\n    - {name: r, notify: [ops], match: {when: {weekdays: [monday]}}}\n":                      "not one of mon",
		n + "  defaults: {enabled: true}\n":                                                                        "send nowhere",
		n + "  rules:\n    - {name: r, notify: [ops]}\n    - {name: r, notify: [ops]}\n":                           "unique",
		n + "  rules:\n    - {name: r, notify: [ops], threshold: {count: 3, window: 1h}, first_seen: ip}\n":        "not both",
		"alerts:\n  notifiers:\n    - {name: ops, kind: webhook, url: 'https://h.example/a', destination: siem}\n": "is only for kind forward",
		n + "  language: fr\n": `alerts.language: "fr" is not en or zh`,
	} {
		_, err := loadYAML(t, raw)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error saying %q", raw, err, want)
		}
	}
}

// TestWebhookNotifierPathSecretMasked: a generic webhook keeping its
// secret in the path (Slack, Discord) is shown as scheme, host and first
// segment; the rest is a secret for scrubbing. A robot's fixed path stays.
func TestWebhookNotifierPathSecretMasked(t *testing.T) {
	c, err := loadYAML(t, `alerts:
  notifiers:
    - {name: slack, kind: webhook, url: "https://hooks.slack.example/services/T0001/B0002/Xs3cr3tT0ken"}
    - {name: discord, kind: webhook, url: "https://discord.example/api/webhooks/123456/d1sc0rd-t0ken?wait=true"}
    - {name: ops, kind: wecom, url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wc-k3y-0001"}
`)
	if err != nil {
		t.Fatal(err)
	}
	shown := c.Redacted()
	for _, want := range []string{"url=https://hooks.slack.example/services/… ", "url=https://discord.example/api/…?wait=xxxxx ",
		"url=https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=xxxxx "} {
		if !strings.Contains(shown, want) {
			t.Errorf("config check lacks %q:\n%s", want, shown)
		}
	}
	for _, s := range []string{"Xs3cr3tT0ken", "d1sc0rd-t0ken", "B0002"} {
		if strings.Contains(shown, s) {
			t.Errorf("config check shows %q:\n%s", s, shown)
		}
	}
	logged := "posting to https://hooks.slack.example/services/T0001/B0002/Xs3cr3tT0ken: refused"
	if got := config.Scrub(logged, c.Secrets()...); strings.Contains(got, "Xs3cr3tT0ken") {
		t.Errorf("scrubbed log line %q", got)
	}
	if got := config.RedactNotifierURL(config.NotifierWebhook, "https://h.example/a"); got != "https://h.example/a" {
		t.Errorf("a one-segment path became %q", got)
	}
}

// TestForwardNotifier: kind forward names a destination of forward: and
// takes its URL and secret from it (per_minute 600 by default); an
// unknown destination is an error naming the notifier's key and forward:,
// and url or secret given to it are refused without being shown.
func TestForwardNotifier(t *testing.T) {
	dests := "forward:\n  - {name: siem, kind: webhook, url: 'https://siem.example/in', secret: wh-s3cret}\n  - {name: lake, kind: file, path: /tmp/out}\n"
	c, err := loadYAML(t, dests+"alerts:\n  notifiers:\n    - {name: siem-alerts, kind: forward, destination: siem}\n  rules:\n    - {name: r, notify: [siem-alerts]}\n")
	if err != nil {
		t.Fatal(err)
	}
	if n := c.Alerts.Notifiers[0].WithDefaults(); n.PerMinute != 600 || n.Destination != "siem" {
		t.Fatalf("notifier %+v", n)
	}
	if shown := c.Redacted(); !strings.Contains(shown, "name=siem-alerts kind=forward destination=siem per_minute=600") {
		t.Errorf("config check lacks the forward notifier:\n%s", shown)
	}
	for raw, want := range map[string][]string{
		"    - {name: siem-alerts, kind: forward, destination: splunk}\n": {`alerts.notifiers[0] (siem-alerts).destination: "splunk" is not the name of a destination in forward: (configured: siem, lake)`},
		"    - {name: siem-alerts, kind: forward}\n":                      {"alerts.notifiers[0] (siem-alerts).destination: a forward notifier needs destination"},
		"    - {name: siem-alerts, kind: forward, destination: siem, url: 'https://h.example/a?key=PLANTED', secret: PLANTEDs}\n": {
			"alerts.notifiers[0] (siem-alerts).url: a forward notifier sends with its destination's url (forward: siem)",
			"alerts.notifiers[0] (siem-alerts).secret: a forward notifier signs with its destination's secret"},
	} {
		_, err := loadYAML(t, dests+"alerts:\n  notifiers:\n"+raw)
		for _, w := range want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%q: got %v, want an error saying %q", raw, err, w)
			}
		}
		if err != nil && strings.Contains(err.Error(), "PLANTED") {
			t.Errorf("the error shows the url or secret: %v", err)
		}
	}
	_, err = loadYAML(t, "alerts:\n  notifiers:\n    - {name: siem-alerts, kind: forward, destination: siem}\n")
	if err == nil || !strings.Contains(err.Error(), "(none is configured)") {
		t.Errorf("a forward notifier without forward: = %v", err)
	}
}
