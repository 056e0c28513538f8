package config

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Alerts are the rules evaluated on every record as it is stored, and the
// chat robots and webhooks their firings are sent to (README "Alerts").
// The shape is fixed by issue 22.
type Alerts struct {
	// Timezone is the zone of match.when's hours and weekdays (default: the
	// top-level timezone).
	Timezone string `yaml:"timezone"`
	// ConsoleURL, optional, is the console's address as people reach it
	// (https://mirror.example): messages then link to the records' search.
	ConsoleURL string `yaml:"console_url"`
	// Language is the messages' language: en (default) or zh.
	Language string `yaml:"language"`
	// Defaults switches on the shipped rules (DefaultAlertRules).
	Defaults  AlertDefaults `yaml:"defaults"`
	Notifiers []Notifier    `yaml:"notifiers"`
	Rules     []AlertRule   `yaml:"rules"`
}

// AlertDefaults turns the shipped rules on: off until Enabled.
type AlertDefaults struct {
	Enabled bool     `yaml:"enabled"`
	Notify  []string `yaml:"notify"`  // the notifiers every default rule sends to
	Disable []string `yaml:"disable"` // default rules left off by name
}

// Notifier is where firings are sent.
type Notifier struct {
	Name string `yaml:"name"`
	Kind string `yaml:"kind"` // wecom | dingtalk | feishu | webhook | forward
	URL  string `yaml:"url"`  // the robot's webhook address, its key included
	// Secret is the robot's signing secret (dingtalk, feishu: optional,
	// as set on the robot) or the webhook's HMAC-SHA256 key (optional).
	Secret string `yaml:"secret"`
	// Destination (kind forward) names the entry of forward: whose URL,
	// credentials, TLS and format the firings are sent with, as alert
	// events (not through its cursor: they are not log events).
	Destination string `yaml:"destination"`
	// PerMinute bounds the messages sent (default: the vendor's limit,
	// 20 for wecom and dingtalk, 100 for feishu; 60 for webhook; 600 for
	// forward, a machine receiver). Firings beyond it are grouped into one
	// summary message, never dropped.
	PerMinute int `yaml:"per_minute"`
}

// Notifier kinds.
const (
	NotifierWeCom    = "wecom"
	NotifierDingTalk = "dingtalk"
	NotifierFeishu   = "feishu"
	NotifierWebhook  = "webhook"
	NotifierForward  = "forward"
)

// AlertRule is one rule: a match and a condition. Neither threshold nor
// first_seen: every matching record fires.
type AlertRule struct {
	Name      string          `yaml:"name"`
	Enabled   *bool           `yaml:"enabled"` // default true
	Match     AlertMatch      `yaml:"match"`
	Threshold *AlertThreshold `yaml:"threshold"`
	// FirstSeen is "ip" (a user's first record from an IP) or "user" (a
	// user never seen before).
	FirstSeen string   `yaml:"first_seen"`
	Notify    []string `yaml:"notify"`
	// IgnoreOlderThan: records whose time is older than this when evaluated
	// feed the rule's state but never fire, so a first backfill does not
	// page everyone (default 24h; 0s evaluates every record).
	IgnoreOlderThan *Duration `yaml:"ignore_older_than"`
	// Suppress: after a firing, the same rule and key do not fire again
	// for this long of record time (default 1h).
	Suppress Duration `yaml:"suppress"`
}

// AlertMatch selects records; empty fields match anything. Object matches
// TAPD's object key (attachment) or its label (附件).
type AlertMatch struct {
	ActionType string     `yaml:"action_type"`
	Object     string     `yaml:"object"`
	Username   string     `yaml:"username"`
	Serial     string     `yaml:"serial"` // the project
	IP         string     `yaml:"ip"`
	Source     string     `yaml:"source"` // tapd | local
	When       *AlertWhen `yaml:"when"`
}

// AlertWhen matches a record's time in alerts.timezone: on one of Weekdays
// (all when empty) within Hours ("09:00-19:00", may wrap midnight; all
// day when empty); Outside inverts it (outside working hours).
type AlertWhen struct {
	Weekdays []string `yaml:"weekdays"` // mon tue wed thu fri sat sun
	Hours    string   `yaml:"hours"`
	Outside  bool     `yaml:"outside"`
}

// AlertThreshold fires when Count matching records of one Per value fall
// within Window of record time.
type AlertThreshold struct {
	Count  int      `yaml:"count"`
	Window Duration `yaml:"window"`
	Per    string   `yaml:"per"` // username (default) | ip | serial
}

// Defaults of a rule's optional settings.
const (
	DefaultAlertIgnoreOlderThan = 24 * time.Hour
	DefaultAlertSuppress        = time.Hour
)

// DefaultAlertRules are the shipped rules, on with alerts.defaults.enabled
// (README "Alerts"); a rule of the same name in alerts.rules replaces one.
func DefaultAlertRules() []AlertRule {
	weekdays := []string{"mon", "tue", "wed", "thu", "fri"}
	return []AlertRule{
		{Name: "bulk-download", Match: AlertMatch{ActionType: "download"},
			Threshold: &AlertThreshold{Count: 100, Window: Duration{time.Hour}, Per: "username"}},
		{Name: "bulk-delete", Match: AlertMatch{ActionType: "delete"},
			Threshold: &AlertThreshold{Count: 50, Window: Duration{time.Hour}, Per: "username"}},
		{Name: "after-hours", Match: AlertMatch{When: &AlertWhen{Weekdays: weekdays, Hours: "08:00-20:00", Outside: true}},
			Suppress: Duration{8 * time.Hour}},
		{Name: "new-ip", FirstSeen: "ip"},
	}
}

// EffectiveRules are the rules evaluated: the enabled defaults and the
// configured rules, optional settings filled.
func (a Alerts) EffectiveRules() []AlertRule {
	var out []AlertRule
	configured := map[string]bool{}
	for _, r := range a.Rules {
		configured[r.Name] = true
	}
	if a.Defaults.Enabled {
		for _, r := range DefaultAlertRules() {
			if !configured[r.Name] && !slices.Contains(a.Defaults.Disable, r.Name) {
				r.Notify = a.Defaults.Notify
				out = append(out, r.WithDefaults())
			}
		}
	}
	for _, r := range a.Rules {
		if r.Enabled == nil || *r.Enabled {
			out = append(out, r.WithDefaults())
		}
	}
	return out
}

// WithDefaults fills a rule's unset optional settings.
func (r AlertRule) WithDefaults() AlertRule {
	if r.IgnoreOlderThan == nil {
		r.IgnoreOlderThan = &Duration{DefaultAlertIgnoreOlderThan}
	}
	if r.Suppress.Duration == 0 {
		r.Suppress.Duration = DefaultAlertSuppress
	}
	if r.Threshold != nil && r.Threshold.Per == "" {
		t := *r.Threshold
		t.Per = "username"
		r.Threshold = &t
	}
	return r
}

// Condition names what makes the rule fire: every, threshold or first_seen.
func (r AlertRule) Condition() string {
	switch {
	case r.Threshold != nil:
		return "threshold"
	case r.FirstSeen != "":
		return "first_seen"
	}
	return "every"
}

// WithDefaults fills a notifier's unset rate limit with its vendor's.
func (n Notifier) WithDefaults() Notifier {
	if n.PerMinute == 0 {
		switch n.Kind {
		case NotifierWeCom, NotifierDingTalk:
			n.PerMinute = 20 // both document 20 messages a minute per robot
		case NotifierFeishu:
			n.PerMinute = 100 // 100 a minute (and 5 a second) per bot
		case NotifierForward:
			n.PerMinute = 600 // a SIEM, not a chat: the most allowed
		default:
			n.PerMinute = 60
		}
	}
	return n
}

// AlertsLocation is the zone of the rules' hours (alerts.timezone, else
// timezone); call after Validate.
func (c Config) AlertsLocation() *time.Location {
	if c.Alerts.Timezone != "" {
		if loc, err := time.LoadLocation(c.Alerts.Timezone); err == nil {
			return loc
		}
	}
	return c.Location()
}

var weekdayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ParseWeekday reads mon..sun.
func ParseWeekday(s string) (time.Weekday, bool) {
	d, ok := weekdayNames[strings.ToLower(s)]
	return d, ok
}

var hoursSpan = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$`)

// ParseHours reads "HH:MM-HH:MM" as minutes of the day [from, to); to may
// be below from (the span wraps midnight).
func ParseHours(s string) (from, to int, err error) {
	m := hoursSpan.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, fmt.Errorf("%q is not a span like 09:00-19:00", s)
	}
	num := func(a, b string) int {
		var h, mi int
		fmt.Sscanf(a+" "+b, "%d %d", &h, &mi)
		return h*60 + mi
	}
	from, to = num(m[1], m[2]), num(m[3], m[4])
	if to > 24*60 || from == to {
		return 0, 0, fmt.Errorf("%q is empty or ends after 24:00", s)
	}
	return from, to, nil
}

func (c Config) validateAlerts(bad func(key, format string, args ...any)) {
	a := c.Alerts
	if a.Language != "" && a.Language != "en" && a.Language != "zh" {
		bad("alerts.language", "%q is not en or zh", a.Language)
	}
	if a.Timezone != "" {
		if _, err := time.LoadLocation(a.Timezone); err != nil {
			bad("alerts.timezone", "%q is not an IANA time zone such as Asia/Shanghai", a.Timezone)
		}
	}
	if a.ConsoleURL != "" {
		if u, err := url.Parse(a.ConsoleURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("alerts.console_url", "%q is not an http(s) URL", a.ConsoleURL)
		}
	}
	notifiers := map[string]bool{}
	var dests []string
	for _, f := range c.Forward {
		dests = append(dests, f.Name)
	}
	for i, n := range a.Notifiers {
		key := checkName(bad, notifiers, "alerts.notifiers", i, n.Name, "notifier", "rules name it in notify")
		if n.PerMinute < 0 || n.PerMinute > 600 {
			bad(key+".per_minute", "%d is outside 1..600", n.PerMinute)
		}
		if n.Kind == NotifierForward {
			validateForwardNotifier(bad, key, n, dests)
			continue
		}
		if n.Destination != "" {
			bad(key+".destination", "is only for kind forward (the forward: destination alerts are sent through); remove it")
		}
		shown, _ := redactNotifierURL(n.Kind, n.URL)
		u, err := url.Parse(n.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(key+".url", "%q is not an http(s) URL (the robot's webhook address)", shown)
			continue
		}
		if u.Scheme != "https" && !isLoopback(u.Hostname()) {
			bad(key+".url", "%s is plain http to another machine, so alerts would cross the network unencrypted; use https://", shown)
		}
		switch n.Kind {
		case NotifierWeCom:
			if u.Query().Get("key") == "" {
				bad(key+".url", "%s has no key= (copy the robot's whole webhook address)", shown)
			}
			if n.Secret != "" {
				bad(key+".secret", "a WeCom robot has no signing secret; its key is in the url")
			}
		case NotifierDingTalk:
			if u.Query().Get("access_token") == "" {
				bad(key+".url", "%s has no access_token= (copy the robot's whole webhook address)", shown)
			}
		case NotifierFeishu:
			if !strings.Contains(u.Path, "/hook/") {
				bad(key+".url", "%s is not a bot webhook address (…/open-apis/bot/v2/hook/…)", shown)
			}
		case NotifierWebhook:
		default:
			bad(key+".kind", "%q is not a notifier kind (wecom, dingtalk, feishu, webhook, forward)", n.Kind)
		}
	}
	checkNotify := func(key string, notify []string) {
		for _, name := range notify {
			if !notifiers[name] {
				bad(key+".notify", "%q is not a notifier in alerts.notifiers", name)
			}
		}
	}
	if a.Defaults.Enabled {
		if len(a.Defaults.Notify) == 0 {
			bad("alerts.defaults.notify", "the default rules are enabled but send nowhere; name notifiers")
		}
		checkNotify("alerts.defaults", a.Defaults.Notify)
	}
	for _, name := range a.Defaults.Disable {
		if !slices.ContainsFunc(DefaultAlertRules(), func(r AlertRule) bool { return r.Name == name }) {
			bad("alerts.defaults.disable", "%q is not a default rule (bulk-download, bulk-delete, after-hours, new-ip)", name)
		}
	}
	rules := map[string]bool{}
	for i, r := range a.Rules {
		key := checkName(bad, rules, "alerts.rules", i, r.Name, "rule", "it names the rule in firings and metrics")
		if len(r.Notify) == 0 {
			bad(key+".notify", "a rule needs at least one notifier")
		}
		checkNotify(key, r.Notify)
		if r.Threshold != nil && r.FirstSeen != "" {
			bad(key+".first_seen", "a rule has one condition: threshold or first_seen, not both")
		}
		if t := r.Threshold; t != nil {
			if t.Count < 1 {
				bad(key+".threshold.count", "%d must be at least 1", t.Count)
			}
			if t.Window.Duration <= 0 || t.Window.Duration > 31*24*time.Hour {
				bad(key+".threshold.window", "%s is outside 1s..744h", t.Window)
			}
			switch t.Per {
			case "", "username", "ip", "serial":
			default:
				bad(key+".threshold.per", "%q is not username, ip or serial", t.Per)
			}
		}
		switch r.FirstSeen {
		case "", "ip", "user":
		default:
			bad(key+".first_seen", "%q is not ip (a user's first record from an IP) or user (a user never seen before)", r.FirstSeen)
		}
		if r.IgnoreOlderThan != nil && r.IgnoreOlderThan.Duration < 0 {
			bad(key+".ignore_older_than", "%s must not be negative", r.IgnoreOlderThan)
		}
		if r.Suppress.Duration < 0 {
			bad(key+".suppress", "%s must not be negative", r.Suppress)
		}
		switch r.Match.Source {
		case "", "tapd", "local":
		default:
			bad(key+".match.source", "%q is not tapd or local", r.Match.Source)
		}
		if w := r.Match.When; w != nil {
			for _, d := range w.Weekdays {
				if _, ok := ParseWeekday(d); !ok {
					bad(key+".match.when.weekdays", "%q is not one of mon tue wed thu fri sat sun", d)
				}
			}
			if w.Hours != "" {
				if _, _, err := ParseHours(w.Hours); err != nil {
					bad(key+".match.when.hours", "%v", err)
				}
			}
		}
	}
}

// validateForwardNotifier checks a notifier of kind forward: it names a
// destination of forward:, and takes its URL and credentials from there.
func validateForwardNotifier(bad func(key, format string, args ...any), key string, n Notifier, dests []string) {
	switch {
	case n.Destination == "":
		bad(key+".destination", "a forward notifier needs destination: the name of an entry of forward: to send the alerts through")
	case !slices.Contains(dests, n.Destination):
		known := "none is configured"
		if len(dests) > 0 {
			known = "configured: " + strings.Join(dests, ", ")
		}
		bad(key+".destination", "%q is not the name of a destination in forward: (%s)", n.Destination, known)
	}
	// The value is not shown: it may hold a key.
	if n.URL != "" {
		bad(key+".url", "a forward notifier sends with its destination's url (forward: %s); remove it here", n.Destination)
	}
	if n.Secret != "" {
		bad(key+".secret", "a forward notifier signs with its destination's secret (forward: %s); remove it here", n.Destination)
	}
}

// redactNotifierURL is RedactDestinationURL that also masks a bot token
// carried in the path (Feishu: …/bot/v2/hook/TOKEN), and for kind webhook
// the whole path after its first segment (Slack, Discord, Teams keep their
// secret there).
func redactNotifierURL(kind, raw string) (shown string, secrets []string) {
	shown, secrets = RedactDestinationURL(raw)
	if before, token, ok := strings.Cut(shown, "/hook/"); ok && token != "" {
		token, rest, _ := strings.Cut(token, "?")
		secrets = append(secrets, token)
		if dec, err := url.PathUnescape(token); err == nil && dec != token {
			secrets = append(secrets, dec)
		}
		shown = before + "/hook/xxxxx"
		if rest != "" {
			shown += "?" + rest
		}
	}
	if kind == NotifierWebhook {
		var more []string
		shown, more = RedactURLPath(shown)
		secrets = append(secrets, more...)
	}
	return shown, secrets
}

// RedactNotifierURL is a notifier's URL fit for logs and errors.
func RedactNotifierURL(kind, raw string) string {
	shown, _ := redactNotifierURL(kind, raw)
	return shown
}

// alertLines are the notifiers and rules for Redacted, secrets masked.
func (c Config) alertLines() []string {
	var out []string
	a := c.Alerts
	if a.Timezone != "" || len(a.Notifiers) > 0 || len(a.Rules) > 0 || a.Defaults.Enabled {
		lang := a.Language
		if lang == "" {
			lang = "en"
		}
		out = append(out, fmt.Sprintf("%-26s = %s", "alerts.timezone", c.AlertsLocation().String()),
			fmt.Sprintf("%-26s = %s", "alerts.language", lang),
			fmt.Sprintf("%-26s = enabled=%t notify=%s disable=%s", "alerts.defaults", a.Defaults.Enabled,
				strings.Join(a.Defaults.Notify, ","), strings.Join(a.Defaults.Disable, ",")))
	}
	for i, n := range a.Notifiers {
		n = n.WithDefaults()
		parts := []string{"name=" + n.Name, "kind=" + n.Kind}
		if n.Kind == NotifierForward {
			parts = append(parts, "destination="+n.Destination)
		} else {
			shown, _ := redactNotifierURL(n.Kind, n.URL)
			parts = append(parts, "url="+shown)
		}
		if n.Secret != "" {
			parts = append(parts, "secret=****")
		}
		parts = append(parts, fmt.Sprintf("per_minute=%d", n.PerMinute))
		out = append(out, fmt.Sprintf("%-26s = %s", fmt.Sprintf("alerts.notifiers[%d]", i), strings.Join(parts, " ")))
	}
	for _, r := range a.EffectiveRules() {
		line := fmt.Sprintf("name=%s condition=%s notify=%s suppress=%s ignore_older_than=%s", r.Name, r.Condition(),
			strings.Join(r.Notify, ","), r.Suppress, r.IgnoreOlderThan)
		out = append(out, fmt.Sprintf("%-26s = %s", "alerts.rule", line))
	}
	return out
}

// alertSecrets are the notifiers' secrets for log scrubbing.
func (c Config) alertSecrets() []string {
	var out []string
	for _, n := range c.Alerts.Notifiers {
		out = append(out, n.Secret)
		_, s := redactNotifierURL(n.Kind, n.URL)
		out = append(out, s...)
	}
	return out
}
