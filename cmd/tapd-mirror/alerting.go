package main

import (
	"context"
	"log/slog"

	"github.com/tapd-mirror/tapd-mirror/alert"
	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// startAlerts evaluates the alert rules on the integrity log and sends
// their firings through the notifiers until stop (README "Alerts"). Like
// forwarding it only reads the log, so a slow robot never slows the sync.
func startAlerts(ctx context.Context, cfg config.Config, st *storage.Store, log *slog.Logger, m *api.Metrics) (stop func(), err error) {
	rules := cfg.Alerts.EffectiveRules()
	if len(rules) == 0 && len(cfg.Alerts.Notifiers) == 0 {
		return func() {}, nil
	}
	// Forward: a notifier of kind forward sends through one of these.
	e, err := alert.New(alert.Options{Store: st, Rules: rules, Notifiers: cfg.Alerts.Notifiers, Forward: cfg.Forward, Version: version,
		Location: cfg.AlertsLocation(), Console: cfg.Location(), ConsoleURL: cfg.Alerts.ConsoleURL, Language: cfg.Alerts.Language, Logger: log.With("component", "alerts")})
	if err != nil {
		return nil, err
	}
	m.Register(e.Collectors()...)
	log.Info("alert rules running", "rules", len(rules), "notifiers", len(cfg.Alerts.Notifiers))
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx)
	}()
	return func() { cancel(); <-done }, nil
}
