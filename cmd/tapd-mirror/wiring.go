package main

import (
	"log/slog"

	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd"
)

// newSyncer builds the TAPD client and the sync engine from configuration.
func newSyncer(cfg config.Config, st *storage.Store, log *slog.Logger, obs observer) (*syncer.Syncer, error) {
	client, err := tapd.New(tapd.Options{
		BaseURL:           cfg.TAPD.BaseURL,
		APIUser:           cfg.TAPD.APIUser,
		APIPassword:       cfg.TAPD.APIPassword,
		AccessToken:       cfg.TAPD.AccessToken,
		Location:          cfg.Location(),
		UserAgent:         "tapd-mirror/" + version,
		RequestsPerMinute: cfg.TAPD.RequestsPerMinute,
		Logger:            log,
		Observe:           obs.tapdAttempt,
	})
	if err != nil {
		return nil, err
	}
	var workspaces []config.Workspace
	for _, w := range cfg.Sync.Workspaces {
		p, err := config.ParseWorkspace(w)
		if err != nil {
			return nil, err
		}
		workspaces = append(workspaces, p)
	}
	return syncer.New(syncer.Options{
		Store:      st,
		TAPD:       client,
		Workspaces: workspaces,
		Location:   cfg.Location(),
		PageSize:   cfg.TAPD.PageSize,
		Overlap:    cfg.Sync.Overlap.Duration,
		Interval:   cfg.Sync.Interval.Duration,
		Logger:     log,
		Metrics:    obs.syncMetrics(),
	}), nil
}
