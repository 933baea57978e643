package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/rules"
)

// Vault is the token vault (pipeline/credentials): the one place that
// touches tokens.
type Vault interface {
	Put(ctx context.Context, workspaceID, provider, account string, tok *oauth2.Token) (string, error)
	TokenSource(connID string) oauth2.TokenSource
	MarkNeedsReauth(ctx context.Context, connID, reason string) error
}

// CalendarConn is what a calendar client is built from.
type CalendarConn struct {
	ID     string
	Tokens oauth2.TokenSource
	// Throttle waits for the connection's client-side rate limit, shared
	// by every process through Redis; pass it to the client.
	Throttle func(ctx context.Context) error
}

// Providers builds provider clients for a connection's token source.
type Providers struct {
	// Calendar builds a Google Calendar source.
	Calendar func(ctx context.Context, c CalendarConn) (calendar.Source, error)
	// CRM builds a HubSpot sink for a portal (empty before it is known).
	CRM func(ctx context.Context, portalID string, ts oauth2.TokenSource) (crm.Sink, error)
}

// Config configures a Pipeline. Zero fields take the defaults in comments.
type Config struct {
	Pool      *pgxpool.Pool
	Redis     redis.UniversalClient
	Vault     Vault
	Providers Providers
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
	// GooglePerMinute is the client-side limit of Google requests per
	// connection (user), shared through Redis: 540, 90% of Google's 600.
	GooglePerMinute int
	// Concurrency per queue (sync 4, crm 2, link 64, maintenance 1).
	Concurrency map[string]int
	Logger      *slog.Logger
	Clock       func() time.Time
	Metrics     *Metrics
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
	if c.GooglePerMinute == 0 {
		c.GooglePerMinute = 540
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
	c.Concurrency = QueueConcurrency(c.Concurrency)
}

// QueueConcurrency returns the workers per queue. Link workers are many
// because each one paces itself to one Google user's limit (9 requests a
// second): the write-back of 200 calendars needs many in parallel.: the defaults (sync 4,
// crm 2, link 64, maintenance 1) overridden by set.
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
	case c.Providers.Calendar == nil || c.Providers.CRM == nil:
		return errors.New("pipeline: Config.Providers needs Calendar and CRM")
	case c.BatchDelay < time.Second:
		return errors.New("pipeline: Config.BatchDelay must be at least 1s (Asynq's minimum grace period)")
	}
	return nil
}

// Pipeline is Rapport's sync: it enqueues and handles the Asynq tasks and
// answers the admin API.
type Pipeline struct {
	cfg       Config
	db        *pgxpool.Pool
	rdb       redis.UniversalClient
	queue     *asynq.Client
	inspector *asynq.Inspector
	log       *slog.Logger
	now       func() time.Time
	metrics   *Metrics

	limiter *redis_rate.Limiter
	indexes *indexCache
	clients sync.Map // connection id → calendar.Source or crm.Sink
}

// New builds a Pipeline.
func New(cfg Config) (*Pipeline, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Pipeline{
		cfg:       cfg,
		db:        cfg.Pool,
		rdb:       cfg.Redis,
		queue:     asynq.NewClientFromRedisClient(cfg.Redis),
		inspector: asynq.NewInspectorFromRedisClient(cfg.Redis),
		log:       cfg.Logger,
		now:       cfg.Clock,
		metrics:   cfg.Metrics,
	}
	p.indexes = newIndexCache(p.db)
	p.limiter = redis_rate.NewLimiter(cfg.Redis)
	return p, nil
}

// source returns the calendar client of a connection.
func (p *Pipeline) source(ctx context.Context, connID string) (calendar.Source, error) {
	if v, ok := p.clients.Load(connID); ok {
		return v.(calendar.Source), nil
	}
	src, err := p.cfg.Providers.Calendar(ctx, CalendarConn{ID: connID, Tokens: p.tokens(connID), Throttle: p.googleThrottle(connID)})
	if err != nil {
		return nil, fmt.Errorf("calendar client for connection %s: %w", connID, err)
	}
	v, _ := p.clients.LoadOrStore(connID, src)
	return v.(calendar.Source), nil
}

// sink returns the CRM client of a connection.
func (p *Pipeline) sink(ctx context.Context, connID, portalID string) (crm.Sink, error) {
	if v, ok := p.clients.Load(connID); ok {
		return v.(crm.Sink), nil
	}
	s, err := p.cfg.Providers.CRM(ctx, portalID, p.tokens(connID))
	if err != nil {
		return nil, fmt.Errorf("crm client for connection %s: %w", connID, err)
	}
	v, _ := p.clients.LoadOrStore(connID, s)
	return v.(crm.Sink), nil
}

func (p *Pipeline) rules() *rules.Set { return p.cfg.Rules() }

// tokens is a connection's token source, cached in memory until the token
// nears expiry (the vault reads the database on every call). A client is
// rebuilt, with a fresh cache, when the connection is re-authorised.
func (p *Pipeline) tokens(connID string) oauth2.TokenSource {
	return oauth2.ReuseTokenSource(nil, p.cfg.Vault.TokenSource(connID))
}
