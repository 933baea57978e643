package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/google"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/hubspot"
	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/pipeline/credentials"
	"github.com/rapportsync/rapport/pipeline/httpapi"
	"github.com/rapportsync/rapport/rules"
)

// app is Rapport wired from its configuration: the Main of STYLE.md. serve,
// worker, run, demo and bench all build one.
type app struct {
	cfg      *Config
	log      *slog.Logger
	pool     *pgxpool.Pool
	rdb      *redis.Client
	vault    *credentials.Vault
	rules    *rules.Holder
	pipeline *pipeline.Pipeline
	metrics  *pipeline.Metrics
	registry *prometheus.Registry
	handler  http.Handler

	// Tuning the demo and the benchmark override.
	pipelineTweak func(*pipeline.Config)
}

// newApp connects to PostgreSQL and Redis and builds every component. It
// checks that the schema is current.
func newApp(ctx context.Context, cfg *Config, logger *slog.Logger, tweak func(*pipeline.Config)) (*app, error) {
	if err := cfg.requireService(); err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, log: logger, pipelineTweak: tweak}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if !strings.Contains(cfg.DatabaseURL, "pool_max_conns") {
		pcfg.MaxConns = poolSize(cfg.Concurrency, tweak)
	}
	if a.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	ropts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("redis url: %w", err)
	}
	a.rdb = redis.NewClient(ropts)
	if err := a.pool.Ping(ctx); err != nil {
		a.Close()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := a.rdb.Ping(ctx).Err(); err != nil {
		a.Close()
		return nil, fmt.Errorf("connect to Redis: %w", err)
	}

	set := rules.Default()
	if cfg.RulesDir != "" {
		if set, err = rules.Load(cfg.RulesDir); err != nil {
			a.Close()
			return nil, fmt.Errorf("rules in %s: %w", cfg.RulesDir, err)
		}
	}
	a.rules = rules.NewHolder(set)

	a.registry = prometheus.NewRegistry()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics = pipeline.NewMetrics(a.registry)
	a.registry.MustRegister(&pipeline.StateCollector{Pool: a.pool})

	googleOAuth, hubspotOAuth := a.oauthConfigs()
	a.vault, err = credentials.New(credentials.Config{
		Pool: a.pool, Keys: cfg.Keys, Logger: logger,
		OAuth: map[string]*oauth2.Config{"google": googleOAuth, "hubspot": hubspotOAuth},
		OnNeedsReauth: func(_, provider string) {
			a.metrics.ReauthNeeded.WithLabelValues(provider).Inc()
		},
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	limit, err := hubspot.ParseLimit(cfg.HubSpotRateLimit)
	if err != nil {
		a.Close()
		return nil, &configError{"RAPPORT_HUBSPOT_RATE_LIMIT", err.Error()}
	}
	pc := pipeline.Config{
		Pool: a.pool, Redis: a.rdb, Vault: a.vault, Rules: a.rules.Get,
		PublicURL: cfg.PublicURL, Backfill: cfg.Backfill, Lookahead: cfg.Lookahead,
		Logger: logger, Metrics: a.metrics, Concurrency: cfg.Concurrency,
		Providers: pipeline.Providers{
			Calendar: func(ctx context.Context, c pipeline.CalendarConn) (calendar.Source, error) {
				hc := &http.Client{Timeout: 30 * time.Second, Transport: a.metrics.GoogleTransport(nil)}
				return google.New(ctx, google.Config{BaseURL: cfg.GoogleAPIURL, HTTPClient: hc, Logger: logger, Throttle: c.Throttle}, c.Tokens)
			},
			CRM: func(ctx context.Context, portalID string, ts oauth2.TokenSource) (crm.Sink, error) {
				return hubspot.New(hubspot.Config{
					BaseURL: cfg.HubSpotAPIURL, Redis: a.rdb, RateLimit: limit, PortalID: portalID, Logger: logger,
					OnRequest: func(endpoint string, status int, d time.Duration) {
						a.metrics.CRMRequests.WithLabelValues(endpoint, fmt.Sprint(status)).Inc()
					},
					OnRateLimitWait: func(d time.Duration) {
						a.metrics.RateLimitWait.WithLabelValues("hubspot").Add(d.Seconds())
					},
				}, ts)
			},
		},
	}
	if tweak != nil {
		tweak(&pc)
	}
	if a.pipeline, err = pipeline.New(pc); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.pipeline.Ready(ctx); err != nil {
		a.Close()
		return nil, fmt.Errorf("not ready: %w", err)
	}
	stateKey := sha256.Sum256(append([]byte("rapport oauth state\x00"), cfg.Keys[0].Secret...))
	a.handler, err = httpapi.New(httpapi.Config{
		Service: a.pipeline, AdminToken: cfg.AdminToken, PublicURL: cfg.PublicURL,
		Google: googleOAuth, HubSpot: hubspotOAuth, StateKey: stateKey[:],
		HubSpotClientSecret: cfg.HubSpotClientSecret, Gatherer: a.registry, Registerer: a.registry, Keys: a.vault,
		RedisConnOpt: redisConnOpt(ropts), Logger: logger,
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// poolSize is the connection pool's size when the database URL does not
// set pool_max_conns. pgxpool's default (4 on a small machine) is fewer than
// the workers: every worker gets a connection, a sync two, plus room for
// the HTTP server and the schedules.
func poolSize(conc map[string]int, tweak func(*pipeline.Config)) int32 {
	probe := pipeline.Config{Concurrency: conc}
	if tweak != nil {
		tweak(&probe)
	}
	n := 8
	for q, c := range pipeline.QueueConcurrency(probe.Concurrency) {
		if q == pipeline.QueueSync {
			c *= 2
		}
		n += c
	}
	// PostgreSQL's default max_connections is 100: stay well under it.
	return int32(min(n, 60))
}

func redisConnOpt(o *redis.Options) asynq.RedisConnOpt {
	return asynq.RedisClientOpt{Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig}
}

// oauthConfigs returns the OAuth clients; nil when a provider has no
// client id configured.
func (a *app) oauthConfigs() (g, h *oauth2.Config) {
	c := a.cfg
	if c.GoogleClientID != "" {
		g = &oauth2.Config{
			ClientID: c.GoogleClientID, ClientSecret: c.GoogleClientSecret,
			Endpoint:    oauth2.Endpoint{AuthURL: c.GoogleAuthURL, TokenURL: c.GoogleTokenURL},
			RedirectURL: c.PublicURL + "/oauth/google/callback",
			Scopes:      []string{"openid", "email", "https://www.googleapis.com/auth/calendar.events"},
		}
	}
	if c.HubSpotClientID != "" {
		h = &oauth2.Config{
			ClientID: c.HubSpotClientID, ClientSecret: c.HubSpotClientSecret,
			Endpoint:    oauth2.Endpoint{AuthURL: c.HubSpotAuthURL, TokenURL: c.HubSpotTokenURL, AuthStyle: oauth2.AuthStyleInParams},
			RedirectURL: c.PublicURL + "/oauth/hubspot/callback",
			Scopes:      []string{"crm.objects.contacts.read", "crm.objects.contacts.write", "crm.objects.companies.read", "crm.objects.owners.read"},
		}
	}
	return g, h
}

// Close releases the connections.
func (a *app) Close() {
	if a.rdb != nil {
		a.rdb.Close()
	}
	if a.pool != nil {
		a.pool.Close()
	}
}

// serveHTTP serves until ctx ends, then shuts down gracefully. ready, if
// set, receives the bound address.
func (a *app) serveHTTP(ctx context.Context, addr string, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	if ready != nil {
		ready(ln.Addr())
	}
	return a.serveListener(ctx, ln)
}

// serveListener serves on ln until ctx ends, then shuts down gracefully.
// The demo and the benchmark listen first, because the public URL they
// configure must name the port.
func (a *app) serveListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 2 * time.Minute}
	a.log.InfoContext(ctx, "serving HTTP", slog.String("addr", ln.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// work runs the workers and schedules until ctx ends.
func (a *app) work(ctx context.Context) error {
	w := a.pipeline.NewWorker()
	if err := w.Start(ctx); err != nil {
		return err
	}
	a.log.InfoContext(ctx, "workers started")
	<-ctx.Done()
	a.log.InfoContext(ctx, "stopping workers")
	w.Shutdown()
	return nil
}

// watchRules reloads the rules on a change of the directory (and on SIGHUP,
// wired by the caller).
func (a *app) watchRules(ctx context.Context) {
	if a.cfg.RulesDir == "" {
		return
	}
	go func() {
		if err := a.rules.Watch(ctx, a.cfg.RulesDir, a.log); err != nil && ctx.Err() == nil {
			a.log.ErrorContext(ctx, "rules watcher stopped", slog.Any("error", err))
		}
	}()
}
