package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// maxPerMessage bounds the firings one message carries; more wait for the
// next one.
const maxPerMessage = 500

// sender is one vendor's request: nil is the vendor's acceptance.
type sender interface {
	send(ctx context.Context, m message) error
}

// closer is a sender holding a connection or file (forward).
type closer interface{ close() error }

// notifier sends the firings pending for one configured notifier.
type notifier struct {
	e        *Engine
	cfg      config.Notifier
	shown    string // the URL with its secrets masked, for logs
	send     sender
	interval time.Duration // between two messages: the vendor's rate limit
	log      *slog.Logger
	wakeup   chan struct{}
}

func newNotifier(e *Engine, n config.Notifier) (*notifier, error) {
	nt := &notifier{e: e, cfg: n, shown: config.RedactNotifierURL(n.Kind, n.URL),
		interval: time.Minute / time.Duration(n.PerMinute), wakeup: make(chan struct{}, 1),
		log: e.o.Logger.With("notifier", n.Name, "kind", n.Kind)}
	h := httpSender{client: e.o.Client, url: n.URL, shown: nt.shown, secret: n.Secret, now: e.o.Now}
	switch n.Kind {
	case config.NotifierWeCom:
		nt.send = wecom{h}
	case config.NotifierDingTalk:
		nt.send = dingtalk{h}
	case config.NotifierFeishu:
		nt.send = feishu{h}
	case config.NotifierWebhook:
		nt.send = webhook{h, n.Name}
	case config.NotifierForward:
		i := slices.IndexFunc(e.o.Forward, func(f config.Forward) bool { return f.Name == n.Destination })
		if i < 0 {
			return nil, fmt.Errorf("alert notifier %s: %q is not a destination in forward:", n.Name, n.Destination)
		}
		s, err := forward.NewAlertSender(e.o.Forward[i], e.o.Version, e.o.Now)
		if err != nil {
			return nil, fmt.Errorf("alert notifier %s: %w", n.Name, err)
		}
		nt.shown = "forward destination " + n.Destination
		nt.send = forwardSender{s: s, e: e, name: n.Name}
	default:
		return nil, fmt.Errorf("alert notifier %s: kind %s is not supported", n.Name, n.Kind)
	}
	return nt, nil
}

func (n *notifier) wake() {
	select {
	case n.wakeup <- struct{}{}:
	default:
	}
}

// run sends until ctx ends: at most one message per interval, each
// carrying every firing pending by then, so a burst becomes one summary.
func (n *notifier) run(ctx context.Context) {
	if c, ok := n.send.(closer); ok {
		defer func() {
			if err := c.close(); err != nil {
				n.log.Warn("closing alert notifier", "err", err)
			}
		}()
	}
	wait := n.e.o.BackoffMin
	var last time.Time
	for {
		if d := n.interval - time.Since(last); d > 0 && !sleep(ctx, d) { // the vendor's rate limit
			return
		}
		pending, err := n.e.o.Store.PendingAlertDeliveries(ctx, n.cfg.Name, maxPerMessage)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			n.log.Warn("reading pending alert firings", "err", err)
		case len(pending) > 0:
			last = time.Now()
			if err := n.deliver(ctx, pending); err != nil {
				if ctx.Err() != nil {
					return
				}
				if rateLimited(err) { // the robots pause a sender for minutes: do not hammer
					wait = max(wait, min(time.Minute, n.e.o.BackoffMax))
				}
				n.log.Warn("sending alert message failed; retrying", "firings", len(pending), "retry_in", wait, "err", err)
				if !sleep(ctx, wait) {
					return
				}
				wait = min(2*wait, n.e.o.BackoffMax)
				continue
			}
			wait = n.e.o.BackoffMin
			continue // more may be pending
		}
		select {
		case <-ctx.Done():
			return
		case <-n.wakeup:
		case <-time.After(n.e.o.Poll):
		}
	}
}

// deliver sends pending as one message and records the outcome on each.
func (n *notifier) deliver(ctx context.Context, pending []storage.AlertFiring) error {
	ids := make([]int64, len(pending))
	for i, f := range pending {
		ids[i] = f.ID
	}
	err := n.send.send(ctx, n.e.compose(pending))
	// The outcome is recorded even when shutdown began meanwhile.
	rec, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err != nil {
		n.e.failures.WithLabelValues(n.cfg.Name).Inc()
		if rerr := n.e.o.Store.RecordAlertDelivery(rec, n.cfg.Name, ids, false, err.Error(), n.e.o.Now()); rerr != nil {
			n.log.Warn("recording a failed alert delivery", "err", rerr)
		}
		return err
	}
	n.e.sent.WithLabelValues(n.cfg.Name).Inc()
	if err := n.e.o.Store.RecordAlertDelivery(rec, n.cfg.Name, ids, true, "", n.e.o.Now()); err != nil {
		// Sent but not recorded: it is sent again after a restart, which
		// at-least-once allows.
		n.log.Warn("recording an alert delivery", "err", err)
	}
	n.log.Info("alert message sent", "firings", len(pending))
	return nil
}

// message is what a notifier sends: a title, a markdown text (the
// vendors' common subset: bold, quotes, lists, links) and the firings.
type message struct {
	Title   string
	Lines   []string // markdown lines, most important first
	Firings []storage.AlertFiring
	Zone    *time.Location
	Console string // base URL of the console, "" without
	say     *phrases
}

// phrases are a message's words in one language (alerts.language). The
// arguments are the same in every language, numbered where the order differs.
type phrases struct {
	title, key, records, record, ids, search                     string
	burstTitle, span, allFirings, burstLine, moreKeys, moreLines string
}

var (
	english = phrases{
		title: "tapd-mirror alert: %s", key: "> key: %s",
		records: "> %d records from %s to %s (%s)", record: "> record at %s (%s)",
		ids: "> records #%d to #%d, firing %d", search: "search the records",
		burstTitle: "tapd-mirror: %d alert firings", span: "> from %s to %s (%s)", allFirings: "all firings",
		burstLine: "- %d firings of %s: %s%s", moreKeys: " and %d more", moreLines: "… (%d more lines)",
	}
	chinese = phrases{
		title: "tapd-mirror 告警：%s", key: "> 对象：%s",
		records: "> %[2]s 至 %[3]s（%[4]s）共 %[1]d 条记录", record: "> 记录时间 %s（%s）",
		ids: "> 记录 #%d 至 #%d，告警 %d", search: "查看这些记录",
		burstTitle: "tapd-mirror：%d 条告警", span: "> %s 至 %s（%s）", allFirings: "全部告警",
		burstLine: "- %[2]s：%[1]d 条，%[3]s%[4]s", moreKeys: " 等另外 %d 个", moreLines: "…（另有 %d 行）",
	}
)

// text joins the lines, cut to limit bytes (0: no limit) on a line
// boundary with a note of what was left out.
func (m message) text(limit int) string {
	var b strings.Builder
	say := m.say
	if say == nil {
		say = &english
	}
	for i, l := range m.Lines {
		more := "\n" + fmt.Sprintf(say.moreLines, len(m.Lines)-i)
		if limit > 0 && b.Len()+len(l)+1+len(more) > limit {
			b.WriteString(strings.TrimPrefix(more, "\n"))
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l)
	}
	return b.String()
}

// link is the console search of a firing's records, "" without a console.
func (e *Engine) link(f storage.AlertFiring) string {
	if e.o.ConsoleURL == "" {
		return ""
	}
	q, _ := url.ParseQuery(f.Search)
	// The console's to is exclusive: one second past the last record.
	q.Set("from", f.WindowStart.In(e.o.Console).Format("2006-01-02 15:04:05"))
	q.Set("to", f.WindowEnd.Add(time.Second).In(e.o.Console).Format("2006-01-02 15:04:05"))
	return strings.TrimRight(e.o.ConsoleURL, "/") + "/?" + q.Encode()
}

// compose writes the message for firings: one firing in detail, a burst
// summarised per rule (how many, for which keys).
func (e *Engine) compose(firings []storage.AlertFiring) message {
	say := &english
	if e.o.Language == "zh" {
		say = &chinese
	}
	m := message{Firings: firings, Zone: e.o.Location, Console: e.o.ConsoleURL, say: say}
	at := func(t time.Time) string { return t.In(e.o.Location).Format("2006-01-02 15:04:05") }
	if len(firings) == 1 {
		f := firings[0]
		m.Title = fmt.Sprintf(say.title, f.Rule)
		m.Lines = append(m.Lines, "**"+mdEscape(m.Title)+"**", fmt.Sprintf(say.key, mdEscape(f.Key)))
		if f.Count > 1 {
			m.Lines = append(m.Lines, fmt.Sprintf(say.records, f.Count, at(f.WindowStart), at(f.WindowEnd), e.o.Location))
		} else {
			m.Lines = append(m.Lines, fmt.Sprintf(say.record, at(f.WindowStart), e.o.Location))
		}
		m.Lines = append(m.Lines, fmt.Sprintf(say.ids, f.FirstRecordID, f.LastRecordID, f.ID))
		if l := e.link(f); l != "" {
			m.Lines = append(m.Lines, "["+say.search+"]("+l+")")
		}
		return m
	}
	type group struct {
		rule string
		keys []string
	}
	var groups []*group
	byRule := map[string]*group{}
	for _, f := range firings {
		g := byRule[f.Rule]
		if g == nil {
			g = &group{rule: f.Rule}
			byRule[f.Rule] = g
			groups = append(groups, g)
		}
		k := mdEscape(f.Key)
		if f.Count > 1 {
			k += fmt.Sprintf(" (%d)", f.Count)
		}
		g.keys = append(g.keys, k)
	}
	sort.SliceStable(groups, func(i, j int) bool { return len(groups[i].keys) > len(groups[j].keys) })
	m.Title = fmt.Sprintf(say.burstTitle, len(firings))
	m.Lines = append(m.Lines, "**"+m.Title+"**",
		fmt.Sprintf(say.span, at(firings[0].FiredAt), at(firings[len(firings)-1].FiredAt), e.o.Location))
	if e.o.ConsoleURL != "" {
		m.Lines = append(m.Lines, "["+say.allFirings+"]("+strings.TrimRight(e.o.ConsoleURL, "/")+"/alerts)")
	}
	for _, g := range groups {
		keys := g.keys
		more := ""
		if len(keys) > 20 { // one line stays readable; the console lists them all
			keys, more = keys[:20], fmt.Sprintf(say.moreKeys, len(keys)-20)
		}
		m.Lines = append(m.Lines, fmt.Sprintf(say.burstLine, len(g.keys), mdEscape(g.rule), strings.Join(keys, ", "), more))
	}
	return m
}

// mdEscape keeps a user's text (a username, IP or serial from TAPD or a
// local POST) from being read as markdown, a link, a tag or a mention by
// the robots. The text never starts a line (it follows a label, and line
// breaks become spaces), so only inline syntax needs escaping:
//   - a backslash escapes itself first, so `\[` cannot undo our escape;
//   - emphasis, links, images and strikethrough get a backslash, and a
//     backtick becomes ' (a code span would show the text raw);
//   - < > & and @ become their full-width forms, so no HTML tag, entity or
//     mention forms whether a vendor reads escapes or not: WeCom's <@userid>,
//     Feishu's <at id=all></at>, DingTalk's @mobile;
//   - control characters (CR and LF included: each ends a markdown line),
//     the Unicode line separators and bidi overrides become a space.
func mdEscape(s string) string {
	var b strings.Builder
	b.Grow(len(s) + len(s)/8)
	for _, r := range s {
		switch {
		case strings.ContainsRune("\\*_[]()!~", r):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '`':
			b.WriteByte('\'')
		case r == '<':
			b.WriteRune('＜')
		case r == '>':
			b.WriteRune('＞')
		case r == '&':
			b.WriteRune('＆')
		case r == '@':
			b.WriteRune('＠')
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r):
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// rateLimited reports whether err is a vendor's rate-limit answer.
func rateLimited(err error) bool { return errors.Is(err, errRateLimited) }
