package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/internal/provider"
	"github.com/rapportsync/rapport/internal/ratelimit"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
	"github.com/rapportsync/rapport/rules"
)

// Vault is the token vault (pipeline/credentials): the one place that
// touches tokens.
type Vault interface {
	Put(ctx context.Context, workspaceID, provider, account string, tok *oauth2.Token) (string, error)
	// PutWith is Put that runs then in the transaction storing the tokens.
	PutWith(ctx context.Context, workspaceID, provider, account string, tok *oauth2.Token,
		then func(ctx context.Context, tx *ledger.Tx, connID string) error) (string, error)
	TokenSource(connID string) oauth2.TokenSource
	MarkNeedsReauth(ctx context.Context, connID, reason string) error
	// Seal and Open encrypt secrets that are not tokens (webhook signing
	// keys, task payloads) with the configured keys, bound to ad.
	Seal(ad string, plain []byte) ([]byte, error)
	Open(ad string, sealed []byte) ([]byte, error)
}

// Registry finds the providers a connection names.
type Registry struct {
	calendars map[string]calendar.Provider
	crms      map[string]crm.Provider
}

// NewRegistry registers calendar providers and CRMs by their names.
func NewRegistry(cals []calendar.Provider, crms []crm.Provider) Registry {
	r := Registry{calendars: map[string]calendar.Provider{}, crms: map[string]crm.Provider{}}
	for _, c := range cals {
		r.calendars[c.Name()] = c
	}
	for _, c := range crms {
		r.crms[c.Name()] = c
	}
	return r
}

// Calendar returns the calendar provider of a name.
func (r Registry) Calendar(name string) (calendar.Provider, bool) {
	p, ok := r.calendars[name]
	return p, ok
}

// CRM returns the CRM of a name.
func (r Registry) CRM(name string) (crm.Provider, bool) {
	p, ok := r.crms[name]
	return p, ok
}

// Config configures a Pipeline. Zero fields take the defaults in comments.
type Config struct {
	Pool  *pgxpool.Pool
	Redis redis.UniversalClient
	Vault Vault
	// Providers are the calendar providers and CRMs, found by name.
	Providers Registry
	// Limiter paces provider requests across processes; default: one in
	// Redis.
	Limiter provider.Limiter
	// Rules returns the rule set in force; nil → rules.Default().
	Rules func() *rules.Set
	// PublicURL is the base of the webhook addresses given to providers.
	PublicURL string
	// Backfill and Lookahead bound the window of meetings written (90 and 30
	// days).
	Backfill, Lookahead time.Duration
	// SyncEvery, IndexEvery, RenewEvery, ReconcileEvery: the schedules (15
	// min, 15 min, 1 h, 6 h).
	SyncEvery, IndexEvery, RenewEvery, ReconcileEvery time.Duration
	// SearchLag is how long a created CRM record may stay invisible to
	// search; a create whose outcome is unknown is retried only after it
	// (30 s).
	SearchLag time.Duration
	// BatchDelay is how long CRM writes wait to be batched (1 s, Asynq's
	// minimum grace period); BatchMaxDelay caps it (1 s).
	BatchDelay, BatchMaxDelay time.Duration
	// SweepEvery is how often the sweep looks for work the ledger says is
	// pending (30 s); SweepGrace how long work may wait before the sweep
	// queues it again (1 min). See sweep.go.
	SweepEvery, SweepGrace time.Duration
	// WriteAttempts is how many attempts a meeting's CRM write gets before
	// it is parked with a dead letter (20); waits for a rate limit count.
	WriteAttempts int
	// Concurrency per queue (sync 4, crm 2, link 64, maintenance 1).
	Concurrency map[string]int
	Logger      *slog.Logger
	Clock       func() time.Time
	Metrics     *Metrics

	// Test hooks, set by export_test.go only. crash, when it returns true
	// at a named point, makes the handler stop there as if its process
	// died (see crash.go); leaseTTL and attemptTTL shorten how long a dead
	// process's leases and create attempts outlive it.
	crash                func(point string) bool
	leaseTTL, attemptTTL time.Duration
}

func (c *Config) withDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Backfill, 90*24*time.Hour)
	def(&c.Lookahead, 30*24*time.Hour)
	def(&c.SyncEvery, 15*time.Minute)
	def(&c.IndexEvery, 15*time.Minute)
	def(&c.RenewEvery, time.Hour)
	def(&c.ReconcileEvery, 6*time.Hour)
	def(&c.SearchLag, 30*time.Second)
	def(&c.BatchDelay, time.Second)
	def(&c.BatchMaxDelay, time.Second)
	def(&c.SweepEvery, 30*time.Second)
	def(&c.SweepGrace, time.Minute)
	def(&c.leaseTTL, leaseTTL)
	def(&c.attemptTTL, attemptTTL)
	if c.WriteAttempts == 0 {
		c.WriteAttempts = 20
	}
	if c.Rules == nil {
		d := rules.Default()
		c.Rules = func() *rules.Set { return d }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Limiter == nil && c.Redis != nil {
		c.Limiter = ratelimit.NewRedis(c.Redis)
	}
	c.Concurrency = QueueConcurrency(c.Concurrency)
}

// QueueConcurrency returns the workers per queue: the defaults (sync 4,
// crm 2, link 64, maintenance 1) overridden by set. Link workers are many
// because each one paces itself to one calendar user's limit: the
// write-back of 200 calendars needs many in parallel.
func QueueConcurrency(set map[string]int) map[string]int {
	conc := map[string]int{QueueSync: 4, QueueCRM: 2, QueueLink: 64, QueueMaintenance: 1}
	for q, n := range set {
		conc[q] = n
	}
	return conc
}

func (c *Config) validate() error {
	switch {
	case c.Pool == nil:
		return errors.New("pipeline: Config.Pool is required")
	case c.Redis == nil:
		return errors.New("pipeline: Config.Redis is required")
	case c.Vault == nil:
		return errors.New("pipeline: Config.Vault is required")
	case len(c.Providers.calendars) == 0 || len(c.Providers.crms) == 0:
		return errors.New("pipeline: Config.Providers needs a calendar provider and a CRM")
	case c.BatchDelay < time.Second:
		return errors.New("pipeline: Config.BatchDelay must be at least 1s (Asynq's minimum grace period)")
	}
	return nil
}

// core is what every part of the pipeline shares: the ledger, the queue,
// the provider clients, the clock.
type core struct {
	cfg       Config
	ledger    *ledger.Store
	rdb       redis.UniversalClient
	queue     *asynq.Client
	inspector *asynq.Inspector
	log       *slog.Logger
	now       func() time.Time
	metrics   *Metrics
	indexes   *indexCache
	clients   sync.Map // connection id → calendar.Source or crm.Sink
}

// Pipeline is Rapport's sync: the handlers of the Asynq tasks (sync, write,
// link, reconcile) and the admin API's operations, over one core.
type Pipeline struct {
	*core
	sync  *syncer
	write *writer
	link  *linker
	rec   *reconciler
}

// New builds a Pipeline.
func New(cfg Config) (*Pipeline, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &core{
		cfg:       cfg,
		ledger:    ledger.New(cfg.Pool).WithCRMs(cfg.Providers.CRMNames()),
		rdb:       cfg.Redis,
		queue:     asynq.NewClientFromRedisClient(cfg.Redis),
		inspector: asynq.NewInspectorFromRedisClient(cfg.Redis),
		log:       cfg.Logger,
		now:       cfg.Clock,
		metrics:   cfg.Metrics,
	}
	c.indexes = newIndexCache(c.ledger)
	p := &Pipeline{core: c, sync: &syncer{c}, write: &writer{c}, link: &linker{c}}
	p.rec = &reconciler{core: c, sync: p.sync}
	return p, nil
}

// source returns the calendar client of a calendar's connection.
func (c *core) source(ctx context.Context, cal ledger.Calendar) (calendar.Source, error) {
	if v, ok := c.clients.Load(cal.ConnectionID); ok {
		return v.(calendar.Source), nil
	}
	prov, ok := c.cfg.Providers.Calendar(cal.Provider)
	if !ok {
		return nil, &provider.Error{Class: provider.Permanent, Op: "open", Err: fmt.Errorf("no calendar provider %q is configured", cal.Provider)}
	}
	src, err := prov.Open(ctx, calendar.Conn{ID: cal.ConnectionID, Account: cal.Owner, Tokens: c.tokens(cal.ConnectionID), Limiter: c.cfg.Limiter})
	if err != nil {
		return nil, fmt.Errorf("calendar client for connection %s: %w", cal.ConnectionID, err)
	}
	v, _ := c.clients.LoadOrStore(cal.ConnectionID, src)
	return v.(calendar.Source), nil
}

// sink returns the CRM client of a connection.
func (c *core) sink(ctx context.Context, conn ledger.CRMConn) (crm.Sink, error) {
	if v, ok := c.clients.Load(conn.ID); ok {
		return v.(crm.Sink), nil
	}
	s, err := c.openSink(ctx, conn.Provider, crm.Conn{ID: conn.ID, Account: conn.Account, Tokens: c.tokens(conn.ID), Limiter: c.cfg.Limiter})
	if err != nil {
		return nil, err
	}
	v, _ := c.clients.LoadOrStore(conn.ID, s)
	return v.(crm.Sink), nil
}

func (c *core) openSink(ctx context.Context, name string, conn crm.Conn) (crm.Sink, error) {
	prov, ok := c.cfg.Providers.CRM(name)
	if !ok {
		return nil, &provider.Error{Class: provider.Permanent, Op: "open", Err: fmt.Errorf("no CRM %q is configured", name)}
	}
	s, err := prov.Open(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("crm client for connection %s: %w", conn.ID, err)
	}
	return s, nil
}

// forget drops a connection's cached client: it is rebuilt, with a fresh
// token cache, when the connection is re-authorised.
func (c *core) forget(connID string) { c.clients.Delete(connID) }

func (c *core) rules() *rules.Set { return c.cfg.Rules() }

func (c *core) ownership() plan.Ownership { return plan.Ownership{Ownership: c.rules().Ownership()} }

// window is the span of time meetings are logged in.
func (c *core) window() plan.Window {
	now := c.now()
	return plan.Window{Min: now.Add(-c.cfg.Backfill), Max: now.Add(c.cfg.Lookahead)}
}

// tokens is a connection's token source, cached in memory until the token
// nears expiry (the vault reads the database on every call).
func (c *core) tokens(connID string) oauth2.TokenSource {
	return oauth2.ReuseTokenSource(nil, c.cfg.Vault.TokenSource(connID))
}

// MeetingKey is plan.MeetingKey: the key of a meeting across its copies.
func MeetingKey(workspaceID, iCalUID string, originalStart time.Time) string {
	return plan.MeetingKey(workspaceID, iCalUID, originalStart)
}

// Names lists the registered providers, sorted.
func (r Registry) Names() []string {
	var out []string
	for n := range r.calendars {
		out = append(out, n)
	}
	for n := range r.crms {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// CRMNames lists the registered CRMs, sorted.
func (r Registry) CRMNames() []string {
	var out []string
	for n := range r.crms {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
