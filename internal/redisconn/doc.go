// Package redisconn owns the connection to Redis: it parses
// RAPPORT_REDIS_URL into a Config that says which topology Rapport talks to
// (one server over TCP, TLS or a Unix socket; a Sentinel-managed master; or a
// Redis Cluster) and builds the matching go-redis client and Asynq connection
// option from it, so that every Redis use in Rapport (Asynq client, server and
// inspector, asynqmon, the redis_rate limiters, leases and caches) goes
// through the same kind of client.
//
// It also turns "Redis is not there" into one sentence an operator can act on
// (Ping), keeps go-redis's own logging off stderr (SetLogger), and provides
// the multi-key helpers that Redis Cluster needs (MGet, Slot). See
// docs/redis.md for the URL forms and for what breaks on a cluster.
package redisconn
