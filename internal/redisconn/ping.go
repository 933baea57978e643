package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// Ping checks that c reaches Redis (on a cluster, every master) and, when it
// does not, returns one sentence that names the address and what to check:
//
//	cannot reach Redis at 127.0.0.1:6379: connection refused; is redis-server running?
//
// The error wraps go-redis's, so errors.Is(err, syscall.ECONNREFUSED) and
// the like still hold. Bound the wait with ctx: go-redis retries a failed
// dial a few times before giving up.
func Ping(ctx context.Context, c redis.UniversalClient) error {
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			if err := n.Ping(ctx).Err(); err != nil {
				return &nodeError{addr: n.Options().Addr, err: err}
			}
			return nil
		})
	} else {
		err = c.Ping(ctx).Err()
	}
	if err == nil {
		return nil
	}
	return describe(c, err)
}

// nodeError names the cluster node a Ping failed on.
type nodeError struct {
	addr string
	err  error
}

func (e *nodeError) Error() string { return e.addr + ": " + e.err.Error() }
func (e *nodeError) Unwrap() error { return e.err }

// pingError is Ping's one-sentence error.
type pingError struct {
	msg string
	err error
}

func (e *pingError) Error() string { return e.msg }
func (e *pingError) Unwrap() error { return e.err }

// describe turns a failed Ping into a sentence. The cause is read from the
// error's types (net.OpError, syscall errnos, DNS and TLS errors, Redis
// error codes), never from go-redis's message text.
func describe(c redis.UniversalClient, err error) error {
	addrs := dialAddrs(err)
	var ne *nodeError
	if cc, ok := c.(*redis.ClusterClient); ok && !errors.As(err, &ne) {
		// No node answered for the cluster's layout: go-redis tried every
		// seed node, but reports one error.
		addrs = cc.Options().Addrs
	}
	if len(addrs) == 0 {
		addrs = clientAddrs(c, err)
	}
	where := "Redis"
	if len(addrs) > 0 {
		where += " at " + strings.Join(addrs, ", ")
	}
	var (
		dnsErr  *net.DNSError
		recErr  tls.RecordHeaderError
		certErr *tls.CertificateVerificationError
		unkAuth x509.UnknownAuthorityError
		netErr  net.Error
	)
	var msg string
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		msg = "cannot reach " + where + ": connection refused; is redis-server running?"
	case errors.Is(err, syscall.ENOENT) || errors.Is(err, os.ErrNotExist):
		msg = "cannot reach " + where + ": no such socket; is redis-server running with this unixsocket?"
	case errors.As(err, &dnsErr):
		msg = "cannot reach " + where + ": host name not found; check the host in RAPPORT_REDIS_URL"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		msg = "cannot reach " + where + ": no route to host; check the address and the network"
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		msg = "cannot reach " + where + ": no answer in time; check the address and port, whether it expects TLS (rediss://), and any firewall"
	case errors.Is(err, context.Canceled):
		msg = "cannot reach " + where + ": cancelled while connecting"
	case errors.As(err, &recErr):
		msg = "cannot reach " + where + ": it does not answer TLS; use redis:// rather than rediss://"
	case errors.As(err, &certErr) || errors.As(err, &unkAuth):
		msg = "cannot reach " + where + ": its TLS certificate is not trusted (" + err.Error() + ")"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		msg = "cannot reach " + where + ": connection reset; if it requires TLS, use rediss://"
	case redis.HasErrorPrefix(err, "WRONGPASS") || redis.HasErrorPrefix(err, "NOAUTH") || redis.HasErrorPrefix(err, "NOPERM") || redis.HasErrorPrefix(err, "AUTH"):
		msg = where + " refused the user name or password; check the credentials in RAPPORT_REDIS_URL"
	case redis.HasErrorPrefix(err, "DB index is out of range"):
		msg = where + " has no such database; use a database number below its 'databases' setting"
	case redis.HasErrorPrefix(err, "CLUSTERDOWN"):
		msg = "Redis Cluster" + strings.TrimPrefix(where, "Redis") + " is down (CLUSTERDOWN): some hash slots have no master"
	case redis.HasErrorPrefix(err, "LOADING"):
		msg = where + " is still loading its data set; try again shortly"
	default:
		msg = "cannot use " + where + ": " + err.Error()
	}
	return &pingError{msg: msg, err: err}
}

// dialAddrs are the remote addresses of the dials in err that failed.
func dialAddrs(err error) []string {
	var addrs []string
	var walk func(error)
	walk = func(err error) {
		if op, ok := err.(*net.OpError); ok && op.Addr != nil {
			if a := op.Addr.String(); !slices.Contains(addrs, a) {
				addrs = append(addrs, a)
			}
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			if e := u.Unwrap(); e != nil {
				walk(e)
			}
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return addrs
}

// clientAddrs is where c was pointed, when the error has no dial in it.
func clientAddrs(c redis.UniversalClient, err error) []string {
	var ne *nodeError
	if errors.As(err, &ne) {
		return []string{ne.addr}
	}
	switch cc := c.(type) {
	case *redis.ClusterClient:
		return cc.Options().Addrs
	case *redis.Client:
		// A failover client's Addr is a placeholder: the master moves.
		if a := cc.Options().Addr; a != "FailoverClient" {
			return []string{a}
		}
	}
	return nil
}
