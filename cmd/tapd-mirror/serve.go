package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tapd-mirror/tapd-mirror/api"
	"github.com/tapd-mirror/tapd-mirror/config"
	"github.com/tapd-mirror/tapd-mirror/storage"
	"github.com/tapd-mirror/tapd-mirror/syncer"
	"github.com/tapd-mirror/tapd-mirror/tapd"
)

// shutdownGrace is how long in-flight requests get after SIGINT/SIGTERM.
const shutdownGrace = 15 * time.Second

func (m *Main) serve(ctx context.Context, args []string) error {
	var c common
	fs := m.flags("serve", "Serve the Activity Log API (listen) and mirror TAPD on the sync schedule.", &c)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, log, err := m.setup(c)
	if err != nil {
		return err
	}
	return m.runServer(ctx, cfg, log)
}

// runServer is serve after configuration: database, schedule, API, until ctx ends.
func (m *Main) runServer(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	var s *syncer.Syncer
	var client *tapd.Client
	metrics := api.NewMetrics(&api.WorkspaceGauges{
		Store:      st,
		Workspaces: func() []string { return s.KnownKeys() },
		Horizon:    func() time.Time { return s.Horizon() },
		LimitWait:  func() time.Duration { return client.LimiterWait() },
		RateLimit:  func() float64 { return client.RateLimit() },
		QuotaPause: func() time.Time { return client.PausedUntil() },
		ExpiresIn:  func(st storage.SyncState) (time.Duration, bool) { return s.ExpiresIn(st) },
		Logger:     log,
	})
	arch, stopArchive, err := startArchive(ctx, cfg, st, log, metrics) // checkpoints, verification, retention
	if err != nil {
		return err
	}
	defer stopArchive()
	defer startBackups(ctx, cfg, st, arch.key, log, metrics, m.now)()
	forwardStatus, forwardReplay, stopForward, err := startForwarding(ctx, cfg, st, log, metrics)
	if err != nil {
		return err
	}
	defer stopForward()
	stopAlerts, err := startAlerts(ctx, cfg, st, log, metrics)
	if err != nil {
		return err
	}
	defer stopAlerts()
	if s, client, err = newSyncer(cfg, st, log, metrics, m.Clock); err != nil {
		return err
	}
	scheduled := len(cfg.Sync.Workspaces) > 0
	if !scheduled {
		log.Warn("no TAPD workspaces configured (sync.workspaces, TAPD_MIRROR_WORKSPACES): serving the API only")
	} else if err := s.Start(); err != nil {
		return err
	}
	defer func() {
		if err := s.Stop(); err != nil {
			log.Warn("stopping sync schedule", "err", err)
		}
	}()
	ready := func(ctx context.Context) error {
		if err := st.Ready(ctx); err != nil {
			return err
		}
		if scheduled && !s.Running() {
			return errors.New("scheduler stopped")
		}
		return nil
	}
	warnExposure(cfg, log)
	srv := api.New(api.Options{Store: st, Syncer: s, Metrics: metrics, Ready: ready, Logger: log,
		Tokens: cfg.APITokens(), RequireReadToken: cfg.Auth.RequireReadToken,
		AllowedHosts: cfg.ServedHosts(), MaxExports: cfg.Export.MaxConcurrent, Location: cfg.Location(),
		Integrity: api.Integrity{VerifierKey: arch.key.VerifierKey(), Status: arch.Status}, Forward: forwardStatus, ForwardReplay: forwardReplay,
		RecordContractReads: cfg.AccessLog.RecordContractReads(),
		Report:              reportMaker(cfg, st, arch.key, s.Horizon, m.now)})
	defer srv.Close() // after the HTTP server drained: the last answers' trail entries
	return m.listenAndServe(ctx, cfg, log, srv.Handler())
}

// listenAndServe serves h on cfg.Listen until ctx ends, then drains.
func (m *Main) listenAndServe(ctx context.Context, cfg config.Config, log *slog.Logger, h http.Handler) error {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s (listen, TAPD_MIRROR_LISTEN): %w", cfg.Listen, err)
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      time.Minute, // exports push their own deadline ahead while they make progress
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	addr := ln.Addr().String()
	log.Info("serving Activity Log API", "url", "http://"+addr, "database", config.RedactDatabaseURL(cfg.DatabaseURL),
		"tokens", len(cfg.APITokens()), "require_read_token", cfg.Auth.RequireReadToken)
	if m.Listening != nil {
		m.Listening(addr)
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving API: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", shutdownGrace)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down API: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// warnExposure says at start what a listen address reachable from other
// machines leaves open (see README "Security").
func warnExposure(cfg config.Config, log *slog.Logger) {
	if !cfg.PublicListen() {
		return
	}
	if !cfg.Auth.RequireReadToken {
		log.Warn("listen is reachable from other machines and the contract's plain list and count need no token; set auth.require_read_token (TAPD_MIRROR_REQUIRE_READ_TOKEN) unless everyone who can reach it may read the archive",
			"listen", cfg.Listen)
	}
	if len(cfg.AllowedHosts) == 0 {
		log.Info("the API answers to localhost and IP addresses only; list the DNS names clients use in allowed_hosts (TAPD_MIRROR_ALLOWED_HOSTS)",
			"listen", cfg.Listen)
	}
}
