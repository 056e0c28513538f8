package main

import (
	"context"
	"log/slog"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/forward"
	"github.com/tapd-mirror/tapd-mirror/storage"
)

// startForwarding delivers the integrity log to the forward: destinations,
// one goroutine each, until stop (README "Forwarding"). They only read the
// log, so a destination that is down never slows the sync or the API.
// status is nil without destinations.
func startForwarding(ctx context.Context, cfg config.Config, st *storage.Store, log *slog.Logger, m *api.Metrics) (status api.ForwardStatus, stop func(), err error) {
	if len(cfg.Forward) == 0 {
		return nil, func() {}, nil
	}
	fw, err := forward.New(forward.Options{Store: st, Destinations: cfg.Forward, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	m.Register(fw.Collectors()...)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fw.Run(ctx)
	}()
	return fw.Status, func() { cancel(); <-done }, nil
}
