package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/rapportsync/rapport/internal/app"
)

// explained is a failure put in one sentence that says what to do; the
// original error stays reachable with errors.Is and errors.As.
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// explain turns the failures a newcomer meets first — PostgreSQL or Redis
// not running, the database not created, PostgreSQL out of connections,
// the HTTP port taken — into one sentence that says the fix. Any other
// error is returned as it is. cfg is the command's configuration (nil for
// commands without one, which read the environment through getenv).
func explain(err error, cfg *app.Config, getenv func(string) string) error {
	if err == nil {
		return nil
	}
	fix := func(format string, args ...any) error {
		return &explained{msg: fmt.Sprintf(format, args...), err: err}
	}
	var connErr *pgconn.ConnectError
	isConn := errors.As(err, &connErr)
	server := "PostgreSQL"
	if isConn && connErr.Config != nil {
		server = "PostgreSQL at " + net.JoinHostPort(connErr.Config.Host, strconv.Itoa(int(connErr.Config.Port)))
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "3D000": // invalid_catalog_name
			name := ""
			if isConn && connErr.Config != nil {
				name = fmt.Sprintf(" %q", connErr.Config.Database)
			}
			return fix("the database%s does not exist on %s: run `rapport migrate` first, which creates it and its tables", name, server)
		case "53300": // too_many_connections
			return fix("%s has no connection left (%s): lower pool_max_conns in RAPPORT_DATABASE_URL%s or RAPPORT_WORKER_CONCURRENCY, stop other clients, or raise max_connections on the server",
				server, pgErr.Message, poolHint(cfg))
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return fix("%s refused the login (%s): put the right user and password in RAPPORT_DATABASE_URL (postgres://USER:PASSWORD@HOST:PORT/rapport) or create the role", server, pgErr.Message)
		case "57P03": // cannot_connect_now
			return fix("%s is starting up or shutting down: wait until it accepts connections and try again", server)
		}
		return err
	}
	var dnsErr *net.DNSError
	if isConn && errors.As(err, &dnsErr) {
		return fix("cannot reach %s: no such host %q; correct the host in RAPPORT_DATABASE_URL", server, dnsErr.Name)
	}
	if isConn {
		return fix("cannot reach %s (%s): start PostgreSQL (`make services` does in a source checkout) or point RAPPORT_DATABASE_URL at a running server", server, reason(err))
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		switch {
		case opErr.Op == "listen" && errors.Is(err, syscall.EADDRINUSE):
			return fix("cannot listen on %s: another program uses that port; stop it or set RAPPORT_HTTP_ADDR to a free address (e.g. 127.0.0.1:8081)", addrOf(opErr))
		case opErr.Op == "listen" && errors.Is(err, syscall.EACCES):
			return fix("cannot listen on %s: ports below 1024 need privileges; set RAPPORT_HTTP_ADDR to a port above 1023 and put a proxy in front", addrOf(opErr))
		case opErr.Op == "dial" && isRedis(opErr, redisURL(cfg, getenv)):
			return fix("cannot reach Redis at %s (%s): start Redis (`make services` does in a source checkout) or point RAPPORT_REDIS_URL at a running server", redisAddr(redisURL(cfg, getenv)), reason(err))
		}
	}
	return err
}

// reason is the cause of a failed connection in a few words.
func reason(err error) string {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: nothing listens there"
	case errors.As(err, &dnsErr):
		return "unknown host " + dnsErr.Name
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "no answer in time"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the host"
	}
	// The innermost error is the most specific one.
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// poolHint says how many connections this process opens, when known.
func poolHint(cfg *app.Config) string {
	if cfg == nil || strings.Contains(cfg.DatabaseURL, "pool_max_conns") || cfg.Concurrency == nil {
		return ""
	}
	return fmt.Sprintf(" (this process opens up to %d)", app.PoolSize(app.RoleRun, cfg.Concurrency, nil))
}

func redisURL(cfg *app.Config, getenv func(string) string) string {
	if cfg != nil {
		return cfg.RedisURL
	}
	if u := getenv("RAPPORT_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

func redisAddr(raw string) string {
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return raw
	}
	return opts.Addr
}

// isRedis reports whether a failed dial was to the configured Redis. Only
// Redis is dialed bare: pgx wraps its dial errors in a ConnectError.
func isRedis(op *net.OpError, raw string) bool {
	host, port, err := net.SplitHostPort(redisAddr(raw))
	if err != nil {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(op, &dnsErr) {
		return dnsErr.Name == host
	}
	if op.Addr == nil {
		return false
	}
	ahost, aport, err := net.SplitHostPort(op.Addr.String())
	if err != nil || aport != port {
		return false
	}
	// A host name resolves to an address we cannot compare; the port must do.
	if ip := net.ParseIP(host); ip != nil {
		return ip.Equal(net.ParseIP(ahost))
	}
	return true
}

func addrOf(op *net.OpError) string {
	if op.Addr != nil {
		return op.Addr.String()
	}
	return "the configured address"
}

// quietRedis silences go-redis's own logger.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}
