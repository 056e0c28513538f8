package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd"
)

// newSyncer builds the TAPD client and the sync engine from configuration;
// m (may be nil) receives their metrics; now (may be nil) is the engine's
// clock, which the demo sets back.
func newSyncer(cfg config.Config, st *storage.Store, log *slog.Logger, m *api.Metrics, now func() time.Time) (*syncer.Syncer, *tapd.Client, error) {
	return newSyncerOver(cfg, st, log, m, now, nil, nil)
}

// newSyncerOver is newSyncer with the client on the clock too (now, and
// wait for its quota pauses; nil: the real time) and its HTTP transport
// given (nil: the default), e.g. doctor's recorder.
func newSyncerOver(cfg config.Config, st *storage.Store, log *slog.Logger, m *api.Metrics, now func() time.Time,
	wait func(context.Context, time.Time) error, transport http.RoundTripper) (*syncer.Syncer, *tapd.Client, error) {
	var observe func(int, int, time.Duration)
	var sm syncer.Metrics
	if m != nil {
		observe, sm = m.TAPDAttempt, m
	}
	client, err := tapd.New(tapd.Options{
		BaseURL:           cfg.TAPD.BaseURL,
		APIUser:           cfg.TAPD.APIUser,
		APIPassword:       cfg.TAPD.APIPassword,
		AccessToken:       cfg.TAPD.AccessToken,
		ClientID:          cfg.TAPD.ClientID,
		ClientSecret:      cfg.TAPD.ClientSecret,
		Location:          cfg.Location(),
		UserAgent:         "tapd-mirror/" + version,
		RequestsPerMinute: cfg.TAPD.RequestsPerMinute,
		PenaltyMax:        cfg.TAPD.PenaltyMax.Duration,
		Logger:            log,
		Observe:           observe,
		Transport:         transport,
		Now:               now,
		WaitUntil:         wait,
	})
	if err != nil {
		return nil, nil, err
	}
	var workspaces []config.Workspace
	for _, w := range cfg.Sync.Workspaces {
		p, err := config.ParseWorkspace(w)
		if err != nil {
			return nil, nil, err
		}
		workspaces = append(workspaces, p)
	}
	return syncer.New(syncer.Options{
		Store:         st,
		TAPD:          client, // TAPD's zone comes from the client: configured once
		Workspaces:    workspaces,
		PageSize:      cfg.TAPD.PageSize,
		HorizonDays:   cfg.TAPD.HorizonDays,
		PagingCap:     cfg.TAPD.PagingCap,
		SplitAbove:    cfg.TAPD.SplitAbove,
		Overlap:       cfg.Sync.Overlap.Duration,
		Interval:      cfg.Sync.Interval.Duration,
		MaxConcurrent: cfg.Sync.MaxConcurrent,
		LeaseTTL:      cfg.Sync.Lease.Duration,
		Settle:        cfg.Sync.Settle.Duration,
		SettleCheck:   cfg.Sync.SettleCheck.Duration,
		RunHistory:    cfg.Sync.RunHistory.Duration,
		Logger:        log,
		Metrics:       sm,
		Now:           now,
	}), client, nil
}
