package redisconn

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Client returns a new go-redis client for the URL's topology: a
// *redis.Client for one server, a failover *redis.Client that follows
// Sentinel's master for Sentinel, a *redis.ClusterClient for a cluster. The
// caller closes it. Creating it does not connect; Ping does.
//
// Share one client per process: Asynq takes it through
// asynq.NewClientFromRedisClient, NewServerFromRedisClient and
// NewInspectorFromRedisClient, and redis_rate through NewLimiter.
func (c Config) Client() redis.UniversalClient {
	switch c.kind {
	case Sentinel:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       c.master,
			SentinelAddrs:    c.Addrs(),
			SentinelUsername: c.sentinelUsername,
			SentinelPassword: c.sentinelPassword,
			Username:         c.username,
			Password:         c.password,
			DB:               c.db,
			DialTimeout:      c.dialTimeout,
			ReadTimeout:      c.readTimeout,
			WriteTimeout:     c.writeTimeout,
			PoolSize:         c.poolSize,
			TLSConfig:        c.tlsConfig(),
			// go-redis retries a failed dial 5 times at every level: the
			// master's pool, each command, and each sentinel lookup inside
			// them. Multiplied, an unreachable Sentinel took 36 s to report;
			// with one dial per attempt it takes half a second, and command
			// retries (MaxRetries, 3) still ride out a failover.
			DialerRetries: 1,
		})
	case Cluster:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:        c.Addrs(),
			Username:     c.username,
			Password:     c.password,
			DialTimeout:  c.dialTimeout,
			ReadTimeout:  c.readTimeout,
			WriteTimeout: c.writeTimeout,
			PoolSize:     c.poolSize,
			MaxRedirects: c.maxRedirects,
			TLSConfig:    c.tlsConfig(),
		})
	default:
		return redis.NewClient(&redis.Options{
			Network:      c.network,
			Addr:         c.addrs[0],
			Username:     c.username,
			Password:     c.password,
			DB:           c.db,
			DialTimeout:  c.dialTimeout,
			ReadTimeout:  c.readTimeout,
			WriteTimeout: c.writeTimeout,
			PoolSize:     c.poolSize,
			TLSConfig:    c.tlsConfig(),
		})
	}
}

// AsynqConnOpt returns the Asynq connection option for the URL's topology:
// asynq.RedisClientOpt, RedisFailoverClientOpt or RedisClusterClientOpt.
// Use it where Asynq must own its connection (asynqmon.Options.RedisConnOpt);
// elsewhere prefer sharing Client. Asynq's cluster option has no pool size,
// so pool_size does not reach it on a cluster.
func (c Config) AsynqConnOpt() asynq.RedisConnOpt {
	switch c.kind {
	case Sentinel:
		return asynq.RedisFailoverClientOpt{
			MasterName:       c.master,
			SentinelAddrs:    c.Addrs(),
			SentinelUsername: c.sentinelUsername,
			SentinelPassword: c.sentinelPassword,
			Username:         c.username,
			Password:         c.password,
			DB:               c.db,
			DialTimeout:      c.dialTimeout,
			ReadTimeout:      c.readTimeout,
			WriteTimeout:     c.writeTimeout,
			PoolSize:         c.poolSize,
			TLSConfig:        c.tlsConfig(),
		}
	case Cluster:
		return asynq.RedisClusterClientOpt{
			Addrs:        c.Addrs(),
			MaxRedirects: c.maxRedirects,
			Username:     c.username,
			Password:     c.password,
			DialTimeout:  c.dialTimeout,
			ReadTimeout:  c.readTimeout,
			WriteTimeout: c.writeTimeout,
			TLSConfig:    c.tlsConfig(),
		}
	default:
		return asynq.RedisClientOpt{
			Network:      c.network,
			Addr:         c.addrs[0],
			Username:     c.username,
			Password:     c.password,
			DB:           c.db,
			DialTimeout:  c.dialTimeout,
			ReadTimeout:  c.readTimeout,
			WriteTimeout: c.writeTimeout,
			PoolSize:     c.poolSize,
			TLSConfig:    c.tlsConfig(),
		}
	}
}

// tlsConfig is a fresh TLS configuration, or nil without TLS. ServerName is
// left empty: the TLS dialer then checks each node's certificate against
// the host it dials, which is what a cluster or a failover needs.
func (c Config) tlsConfig() *tls.Config {
	if !c.tls {
		return nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12}
}

// SetLogger sends go-redis's own log lines (dial retries, sentinel and
// cluster topology changes, pool errors) to l at debug level instead of
// stderr, and drops them when l is nil. go-redis has one logger per process,
// so the binary calls this once at start-up; the errors that matter reach
// Rapport anyway as the results of its calls, which it logs in context.
func SetLogger(l *slog.Logger) {
	redis.SetLogger(slogLogger{l})
}

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Printf(ctx context.Context, format string, v ...any) {
	if s.l == nil || !s.l.Enabled(ctx, slog.LevelDebug) {
		return
	}
	s.l.DebugContext(ctx, fmt.Sprintf(format, v...), slog.String("component", "go-redis"))
}
