// Package app is Rapport wired from its configuration: the Main of
// STYLE.md. The binary's commands serve, worker and run, the demo and the
// benchmark all build one App. It also reads the configuration (Config).
package app

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

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/calendar/calendly"
	"github.com/rapportsync/rapport/calendar/google"
	"github.com/rapportsync/rapport/calendar/microsoft"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/crm/hubspot"
	"github.com/rapportsync/rapport/internal/provider"
	"github.com/rapportsync/rapport/internal/ratelimit"
	"github.com/rapportsync/rapport/internal/redisconn"
	"github.com/rapportsync/rapport/pipeline"
	"github.com/rapportsync/rapport/pipeline/credentials"
	"github.com/rapportsync/rapport/pipeline/httpapi"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/rules"
)

// App is Rapport wired: its connections and components.
type App struct {
	Config   *Config
	Log      *slog.Logger
	Pool     *pgxpool.Pool
	Redis    redis.UniversalClient
	Vault    *credentials.Vault
	Rules    *rules.Holder
	Pipeline *pipeline.Pipeline
	Metrics  *pipeline.Metrics
	// Registry is the Prometheus registry /metrics serves.
	Registry *prometheus.Registry
	Handler  http.Handler
}

// Options adjust an App for the demo and the benchmark.
type Options struct {
	// Pipeline adjusts the pipeline's tuning.
	Pipeline func(*pipeline.Config)
	// Unlimited lifts the client-side limits of every provider (a benchmark
	// against fakes without limits).
	Unlimited bool
	// Role is what the process runs (RoleRun, the zero value, for the demo
	// and the benchmark); it sizes the database pool.
	Role Role
}

// Role is what a process runs: the HTTP server, the workers, or both.
type Role int

// Roles.
const (
	// RoleRun serves HTTP and runs the workers (rapport run, demo, bench).
	RoleRun Role = iota
	// RoleServe serves HTTP only (rapport serve).
	RoleServe
	// RoleWorker runs the workers and schedules only (rapport worker).
	RoleWorker
)

// New connects to PostgreSQL and Redis and builds every component. It
// checks that the schema is current.
func New(ctx context.Context, cfg *Config, logger *slog.Logger, opts Options) (*App, error) {
	if err := cfg.RequireService(); err != nil {
		return nil, err
	}
	a := &App{Config: cfg, Log: logger}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	poolSetting := "pool_max_conns in RAPPORT_DATABASE_URL"
	if !strings.Contains(cfg.DatabaseURL, "pool_max_conns") {
		pcfg.MaxConns = PoolSize(opts.Role, cfg.Concurrency, opts.Pipeline)
		if opts.Role != RoleServe {
			poolSetting = "RAPPORT_WORKER_CONCURRENCY (or set pool_max_conns in RAPPORT_DATABASE_URL)"
		}
	}
	if a.Pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	// One client for every Redis use — Asynq's client, servers and
	// inspector, the rate limiters, the leases, the caches — of the
	// topology the URL names: one server, Sentinel or Cluster.
	rconf, err := redisconn.Parse(cfg.RedisURL)
	if err != nil {
		a.Close()
		return nil, err
	}
	redisconn.SetLogger(logger)
	a.Redis = rconf.Client()
	if err := a.Pool.Ping(ctx); err != nil {
		a.Close()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := checkPoolFits(ctx, a.Pool, poolSetting); err != nil {
		a.Close()
		return nil, err
	}
	if err := pingRedis(ctx, a.Redis); err != nil {
		a.Close()
		return nil, err
	}

	set := rules.Default()
	if cfg.RulesDir != "" {
		if set, err = rules.Load(cfg.RulesDir); err != nil {
			a.Close()
			return nil, fmt.Errorf("rules in %s: %w", cfg.RulesDir, err)
		}
	}
	a.Rules = rules.NewHolder(set)

	a.Registry = prometheus.NewRegistry()
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.Metrics = pipeline.NewMetrics(a.Registry)
	a.Registry.MustRegister(&pipeline.StateCollector{Ledger: ledger.New(a.Pool)}, &pipeline.RulesCollector{Rules: a.Rules.Get})

	limit, err := hubspot.ParseLimit(cfg.HubSpotRateLimit)
	if err != nil {
		a.Close()
		return nil, &configError{"RAPPORT_HUBSPOT_RATE_LIMIT", err.Error()}
	}
	prov, err := a.providers(limit, opts.Unlimited)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.Vault, err = credentials.New(credentials.Config{
		Pool: a.Pool, Keys: cfg.Keys, Logger: logger, OAuth: prov.tokenClients(),
		OnNeedsReauth: func(_, provider string) { a.Metrics.ReauthNeeded(provider) },
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	pc := pipeline.Config{
		Pool: a.Pool, Redis: a.Redis, Vault: a.Vault, Rules: a.Rules.Get, Limiter: ratelimit.NewRedis(a.Redis),
		PublicURL: cfg.PublicURL, Backfill: cfg.Backfill, Lookahead: cfg.Lookahead,
		SyncEvery: cfg.SyncEvery, SweepEvery: cfg.SweepEvery, SweepGrace: cfg.SweepGrace, SearchLag: cfg.CRMSearchLag,
		Logger: logger, Metrics: a.Metrics, Concurrency: cfg.Concurrency,
		Providers: pipeline.NewRegistry(prov.calendars, prov.crms),
	}
	if opts.Pipeline != nil {
		opts.Pipeline(&pc)
	}
	if a.Pipeline, err = pipeline.New(pc); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.Pipeline.Ready(ctx); err != nil {
		a.Close()
		return nil, fmt.Errorf("not ready: %w", err)
	}
	stateKey := sha256.Sum256(append([]byte("rapport oauth state\x00"), cfg.Keys[0].Secret...))
	a.Handler, err = httpapi.New(httpapi.Config{
		Service: a.Pipeline, AdminToken: cfg.AdminToken, PublicURL: cfg.PublicURL,
		OAuth: prov.oauth, StateKey: stateKey[:],
		Gatherer: a.Registry, Registerer: a.Registry, Keys: a.Vault,
		RedisConnOpt: rconf.AsynqConnOpt(), Logger: logger, Console: a.Pipeline.Console(a.Rules),
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// providers is every provider Rapport speaks, configured: the calendar
// providers and CRMs of the pipeline's registry and their OAuth clients.
type providers struct {
	calendars []calendar.Provider
	crms      []crm.Provider
	oauth     map[string]httpapi.OAuthProvider
}

// tokenClients are the OAuth clients the vault refreshes tokens with.
func (p providers) tokenClients() map[string]*oauth2.Config {
	out := map[string]*oauth2.Config{}
	for name, op := range p.oauth {
		if op.Config != nil && op.Config.ClientID != "" {
			out[name] = op.Config
		}
	}
	return out
}

// providers wires the adapters. Adding a provider is one entry here.
func (a *App) providers(limit hubspot.Limit, unlimited bool) (providers, error) {
	c := a.Config
	m := a.Metrics
	client := func() *http.Client { return &http.Client{Timeout: 30 * time.Second} }
	oc := func(id, secret, auth, token string, style oauth2.AuthStyle, scopes ...string) *oauth2.Config {
		return &oauth2.Config{ClientID: id, ClientSecret: secret, Scopes: scopes,
			Endpoint: oauth2.Endpoint{AuthURL: auth, TokenURL: token, AuthStyle: style}}
	}
	hook := func(name string) func(string, int) { return func(ep string, st int) { m.Request(name, ep, st) } }

	g := google.Provider{Config: google.Config{BaseURL: c.GoogleAPIURL, HTTPClient: client(), Logger: a.Log, OnRequest: hook("google")}}
	ms := &microsoft.Provider{Config: microsoft.Config{BaseURL: c.MicrosoftAPIURL, HTTPClient: client(), Logger: a.Log, OnRequest: hook("microsoft")}}
	cly, err := calendly.NewProvider(calendly.Config{BaseURL: c.CalendlyAPIURL, HTTPClient: client(), Logger: a.Log, OnRequest: hook("calendly"),
		AppSigningKey: []byte(c.CalendlySigningKey)})
	if err != nil {
		return providers{}, err
	}
	hs := hubspot.Config{BaseURL: c.HubSpotAPIURL, RateLimit: limit, Logger: a.Log,
		OnRequest:       func(endpoint string, status int, _ time.Duration) { m.Request("hubspot", endpoint, status) },
		OnRateLimitWait: func(d time.Duration) { m.RateLimitWait("hubspot", d) }}
	if unlimited {
		g.PerMinute = 1_000_000
		ms.PerMailbox = provider.Limit{Rate: 1_000_000, Burst: 1_000, Period: time.Second}
		hs.RateLimit = hubspot.Limit{Requests: 1_000_000, Window: time.Second}
		hs.SearchPerSecond = 1_000_000
	}
	return providers{
		calendars: []calendar.Provider{g, ms, cly},
		crms:      []crm.Provider{hubspot.Provider{Config: hs, ClientSecret: c.HubSpotClientSecret}},
		oauth: map[string]httpapi.OAuthProvider{
			"google": {Title: "Google Calendar", Calendars: []string{"primary"}, LoginHint: true,
				Config:  oc(c.GoogleClientID, c.GoogleClientSecret, c.GoogleAuthURL, c.GoogleTokenURL, oauth2.AuthStyleAutoDetect, google.Scopes...),
				Options: []oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("prompt", "consent")},
				Account: func(_ context.Context, tok *oauth2.Token) (string, error) { return google.AccountFromToken(tok) }},
			"microsoft": {Title: "Microsoft 365", Calendars: []string{"primary"}, LoginHint: true,
				Config:  oc(c.MicrosoftClientID, c.MicrosoftClientSecret, c.MicrosoftAuthURL, c.MicrosoftTokenURL, oauth2.AuthStyleInParams, microsoft.Scopes...),
				Account: func(_ context.Context, tok *oauth2.Token) (string, error) { return microsoft.AccountFromToken(tok) }},
			// Calendly's account and calendar come from the token itself
			// (the pipeline asks Calendly).
			"calendly": {Title: "Calendly",
				Config: oc(c.CalendlyClientID, c.CalendlyClientSecret, c.CalendlyAuthURL, c.CalendlyTokenURL, oauth2.AuthStyleInHeader, calendly.Scopes...)},
			"hubspot": {Title: "HubSpot",
				Config: oc(c.HubSpotClientID, c.HubSpotClientSecret, c.HubSpotAuthURL, c.HubSpotTokenURL, oauth2.AuthStyleInParams, hubspot.Scopes...)},
		},
	}, nil
}

// Database connections a process's pool may open (PoolSize). Every handler
// holds at most one connection at a time except where noted, and pgxpool
// queues an acquire beyond the pool's size, so these are ceilings, not
// reservations (the pool opens connections as it needs them):
//
//	serve:  httpConns (10): each request holds one connection for the
//	        length of a query or a short transaction; more requests at once
//	        wait briefly in the pool's queue.
//	worker: 2·sync + 2·crm + min(link, 16) + 2·maintenance + 4
//	        a sync holds a page's transaction and reads the ledger beside it;
//	        a CRM batch likewise; a write-back holds one connection only
//	        between its provider calls, so 16 serve any number of link
//	        workers; reconciliation and the index refresh hold a transaction
//	        and read beside it; 4 for the schedules, the sweep, token
//	        refreshes and readiness checks.
//	run:    serve + worker.
//
// With the default RAPPORT_WORKER_CONCURRENCY (sync=4,crm=2,link=64,
// maintenance=1) that is 10 for serve, 34 for worker and 44 for run: two
// default processes fit PostgreSQL's default max_connections of 100.
const (
	httpConns     = 10
	linkConnsMax  = 16
	workerReserve = 4
)

// PoolSize is the connection pool's size when the database URL does not
// set pool_max_conns: what the process's role runs (see httpConns).
func PoolSize(role Role, conc map[string]int, tweak func(*pipeline.Config)) int32 {
	probe := pipeline.Config{Concurrency: conc}
	if tweak != nil {
		tweak(&probe)
	}
	n := 0
	if role != RoleWorker {
		n += httpConns
	}
	if role != RoleServe {
		n += workerReserve
		for q, c := range pipeline.QueueConcurrency(probe.Concurrency) {
			switch q {
			case pipeline.QueueLink:
				n += min(c, linkConnsMax)
			default:
				n += 2 * c
			}
		}
	}
	return int32(n)
}

// checkPoolFits refuses a pool that could open more connections than the
// server has free: max_connections, less the slots reserved for superusers
// (unless we are one), less the client connections open now (other than
// the pool's own). Starting anyway would fail later, under load, with
// "too many clients" in some other process.
func checkPoolFits(ctx context.Context, pool *pgxpool.Pool, setting string) error {
	c, err := ledger.New(pool).Capacity(ctx)
	if err != nil {
		return fmt.Errorf("read PostgreSQL's max_connections: %w", err)
	}
	free := c.MaxConnections - c.InUse
	if !c.Superuser {
		free -= c.Reserved
	}
	// Our own connection is one of the pool's.
	free++
	if need := int(pool.Config().MaxConns); need > free {
		return fmt.Errorf("this process's database pool may open %d connections but PostgreSQL has %d free (max_connections %d, %d in use): lower %s, or raise max_connections",
			need, max(free, 0), c.MaxConnections, c.InUse, setting)
	}
	return nil
}

// redisPingTimeout bounds the start-up check of Redis.
const redisPingTimeout = 10 * time.Second

// pingRedis checks Redis at start-up (every master of a cluster) and says
// in one sentence what failed.
func pingRedis(ctx context.Context, rdb redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := redisconn.Ping(ctx, rdb); err != nil {
		return fmt.Errorf("%w (start it or fix RAPPORT_REDIS_URL)", err)
	}
	return nil
}

// Close releases the connections.
func (a *App) Close() {
	if s, ok := a.Handler.(*httpapi.Server); ok {
		s.Close()
	}
	if a.Redis != nil {
		a.Redis.Close()
	}
	if a.Pool != nil {
		a.Pool.Close()
	}
}

// Serve serves HTTP on addr until ctx ends, then shuts down gracefully.
// ready, if set, receives the bound address.
func (a *App) Serve(ctx context.Context, addr string, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	if ready != nil {
		ready(ln.Addr())
	}
	return a.ServeListener(ctx, ln)
}

// ServeListener serves on ln until ctx ends, then shuts down gracefully.
// The demo and the benchmark listen first, because the public URL they
// configure must name the port.
func (a *App) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a.Handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 2 * time.Minute}
	a.Log.InfoContext(ctx, "serving HTTP", slog.String("addr", ln.Addr().String()))
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

// Work runs the workers and schedules until ctx ends.
func (a *App) Work(ctx context.Context) error {
	w := a.Pipeline.NewWorker()
	if err := w.Start(ctx); err != nil {
		return err
	}
	a.Log.InfoContext(ctx, "workers started")
	<-ctx.Done()
	a.Log.InfoContext(ctx, "stopping workers")
	w.Shutdown()
	return nil
}

// ReloadRules reloads the rules from RAPPORT_RULES_DIR (on SIGHUP). A
// reload that changes the version logs one line saying what changed
// (rules added, removed, edited, …); a refused one keeps the rules in
// force and returns why. The directory watcher logs its reloads alike.
func (a *App) ReloadRules(ctx context.Context) error {
	if a.Config.RulesDir == "" {
		a.Log.InfoContext(ctx, "no RAPPORT_RULES_DIR; the built-in rules stay")
		return nil
	}
	old := a.Rules.Get()
	if err := a.Rules.Reload(a.Config.RulesDir); err != nil {
		return err
	}
	cur := a.Rules.Get()
	if cur.Version() == old.Version() {
		a.Log.InfoContext(ctx, "rules reloaded: no change", slog.String("version", cur.Version()))
		return nil
	}
	a.Log.InfoContext(ctx, "rules reloaded", slog.String("dir", a.Config.RulesDir), slog.String("version", cur.Version()),
		slog.String("previous_version", old.Version()), slog.Int("rules", len(cur.Rules())), slog.String("changes", rules.Diff(old, cur)))
	return nil
}

// WatchRules reloads the rules on a change of the directory (and on
// SIGHUP, wired by the caller: ReloadRules).
func (a *App) WatchRules(ctx context.Context) {
	if a.Config.RulesDir == "" {
		return
	}
	go func() {
		if err := a.Rules.Watch(ctx, a.Config.RulesDir, a.Log); err != nil && ctx.Err() == nil {
			a.Log.ErrorContext(ctx, "rules watcher stopped", slog.Any("error", err))
		}
	}()
}
