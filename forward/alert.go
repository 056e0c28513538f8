package forward

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
)

// AlertSender sends alert rules' firings as alert events (type "alert",
// Event.Alert) through a forward destination's settings: its URL,
// credentials, TLS, format and metadata, with its own connection. It does
// not touch the destination's cursor: an alert is not an integrity log
// event, and its at-least-once delivery is the alert notifier's (README
// "Alerts"). Send is for one goroutine at a time.
type AlertSender struct {
	name string
	dest destination
}

// NewAlertSender builds a sender with cfg's settings (cfg is a validated
// forward: entry); version is the binary's, named in CEF headers. It
// opens nothing remote.
func NewAlertSender(cfg config.Forward, version string, now func() time.Time) (*AlertSender, error) {
	if now == nil {
		now = time.Now
	}
	if version == "" {
		version = "dev"
	}
	d, err := newDestination(cfg.WithDefaults(), now, version, true)
	if err != nil {
		return nil, fmt.Errorf("alerts through forward destination %s: %w", cfg.Name, err)
	}
	return &AlertSender{name: cfg.Name, dest: d}, nil
}

// Send delivers alerts (firing ids ascending) as one batch; nil is the
// destination's ack, as for log events. key is the batch's idempotency
// key (webhook), the notifier's: a batch sent again carries the same
// firing ids, and receivers deduplicate on alert.id.
func (s *AlertSender) Send(ctx context.Context, key string, alerts []Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	events := make([]Event, len(alerts))
	for i := range alerts {
		a := alerts[i]
		// at: the destinations' timestamp (HEC time, syslog TIMESTAMP, CEF rt).
		events[i] = Event{Type: "alert", Time: a.FiredAt, Alert: &a, at: time.Unix(a.FiredAt, 0)}
	}
	// No shared encodings: those are keyed by log index, which alerts lack.
	b := Batch{First: alerts[0].ID, Last: alerts[len(alerts)-1].ID, Count: len(alerts), Events: events, key: key}
	if err := s.dest.Deliver(ctx, b); err != nil {
		return fmt.Errorf("sending %s through forward destination %s: %w", b.span(), s.name, err)
	}
	return nil
}

// Close closes the connection or file the sender holds.
func (s *AlertSender) Close() error { return s.dest.Close() }

// alerts reports whether b is an AlertSender's batch: First and Last are
// then firing ids, not log indexes.
func (b Batch) alerts() bool { return len(b.Events) > 0 && b.Events[0].Alert != nil }

// span names b in errors: "events 5-9" (log indexes) or "alerts 12-14"
// (firing ids).
func (b Batch) span() string {
	what := "events "
	if b.alerts() {
		what = "alerts "
	}
	return what + strconv.FormatInt(b.First, 10) + "-" + strconv.FormatInt(b.Last, 10)
}
