package redisconn

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kind is the Redis topology a URL names.
type Kind string

const (
	// Standalone is one Redis server: redis://, rediss:// or unix://.
	Standalone Kind = "standalone"
	// Sentinel is a master found through Redis Sentinel: redis-sentinel://
	// or rediss-sentinel://.
	Sentinel Kind = "sentinel"
	// Cluster is a Redis Cluster: redis-cluster:// or rediss-cluster://.
	Cluster Kind = "cluster"
)

// Default ports of a Redis server and of a Sentinel, used when a URL names a
// host without one.
const (
	defaultPort         = "6379"
	defaultSentinelPort = "26379"
)

// redacted replaces every secret String prints, as net/url's Redacted does.
const redacted = "xxxxx"

// Config is a parsed RAPPORT_REDIS_URL. It is made by Parse; the zero value
// is not usable. A Config holds no connection: Client and AsynqConnOpt make
// them.
type Config struct {
	kind    Kind
	tls     bool
	network string   // "tcp", or "unix" for a socket (Standalone only)
	addrs   []string // the server or socket path; the sentinels; the cluster seed nodes

	username, password string // of the data nodes (the master, the cluster nodes)
	db                 int

	master                             string // Sentinel: the monitored master's name
	sentinelUsername, sentinelPassword string // Sentinel: of the sentinels themselves

	// Zero means go-redis's (and Asynq's) default: dial 5 s, read and write
	// 3 s, pool 10 connections per CPU, 3 cluster redirects.
	dialTimeout, readTimeout, writeTimeout time.Duration
	poolSize                               int
	maxRedirects                           int
}

// option is a query parameter a URL may carry.
type option struct {
	name  string
	kinds []Kind // the forms that accept it; nil: all
	set   func(c *Config, v string) error
}

var options = []option{
	{name: "db", kinds: []Kind{Standalone}, set: func(c *Config, v string) error {
		if c.network != "unix" {
			return errors.New("db= is for unix:// URLs; write the database as the path: redis://host:6379/2")
		}
		db, err := parseDB(v)
		c.db = db
		return err
	}},
	{name: "master", kinds: []Kind{Sentinel}, set: func(c *Config, v string) error {
		if strings.TrimSpace(v) != v || strings.ContainsAny(v, " \t\r\n") {
			return errors.New("the master name must not contain spaces")
		}
		c.master = v
		return nil
	}},
	{name: "sentinel_username", kinds: []Kind{Sentinel}, set: func(c *Config, v string) error {
		c.sentinelUsername = v
		return nil
	}},
	{name: "sentinel_password", kinds: []Kind{Sentinel}, set: func(c *Config, v string) error {
		c.sentinelPassword = v
		return nil
	}},
	{name: "dial_timeout", set: func(c *Config, v string) (err error) {
		c.dialTimeout, err = parseTimeout(v)
		return err
	}},
	{name: "read_timeout", set: func(c *Config, v string) (err error) {
		c.readTimeout, err = parseTimeout(v)
		return err
	}},
	{name: "write_timeout", set: func(c *Config, v string) (err error) {
		c.writeTimeout, err = parseTimeout(v)
		return err
	}},
	{name: "pool_size", set: func(c *Config, v string) (err error) {
		c.poolSize, err = parsePositive(v)
		return err
	}},
	{name: "max_redirects", kinds: []Kind{Cluster}, set: func(c *Config, v string) (err error) {
		c.maxRedirects, err = parsePositive(v)
		return err
	}},
}

func (o option) accepts(k Kind) bool { return o.kinds == nil || slices.Contains(o.kinds, k) }

func lookupOption(name string) (option, bool) {
	for _, o := range options {
		if o.name == name {
			return o, true
		}
	}
	return option{}, false
}

// schemes maps a URL scheme to the topology it names and whether it uses TLS.
var schemes = map[string]struct {
	kind Kind
	tls  bool
}{
	"redis":           {Standalone, false},
	"rediss":          {Standalone, true},
	"unix":            {Standalone, false},
	"redis-sentinel":  {Sentinel, false},
	"rediss-sentinel": {Sentinel, true},
	"redis-cluster":   {Cluster, false},
	"rediss-cluster":  {Cluster, true},
}

const formsHint = "redis://[user:password@]host:port/db, rediss://… (TLS), unix:///path/to/redis.sock?db=N, " +
	"redis-sentinel://[:password@]host:port[,host:port…]/db?master=NAME, redis-cluster://[user:password@]host:port[,host:port…]"

// Parse reads a Redis URL in one of these forms (docs/redis.md has more):
//
//	redis://[user:password@]host[:port][/db]           one server
//	rediss://[user:password@]host[:port][/db]          one server over TLS
//	unix://[user:password@]/path/to/redis.sock[?db=N]  one server on a Unix socket
//	redis-sentinel://[user:password@]host[:port][,host[:port]…][/db]?master=NAME[&sentinel_password=…]
//	redis-cluster://[user:password@]host[:port][,host[:port]…]
//
// (rediss-sentinel:// and rediss-cluster:// use TLS). The user and password
// are those of the data nodes; a Sentinel's own are sentinel_username and
// sentinel_password. Every form accepts dial_timeout, read_timeout and
// write_timeout (a Go duration, or whole seconds) and pool_size; a cluster
// also max_redirects. Ports default to 6379, and to 26379 for sentinels.
//
// Errors say what is wrong without repeating the URL, so a password in it
// never reaches a log.
func Parse(rawURL string) (Config, error) {
	c, err := parse(rawURL)
	if err != nil {
		return Config{}, fmt.Errorf("redis url: %w", err)
	}
	return c, nil
}

func parse(raw string) (Config, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return Config{}, errors.New("empty; expected one of " + formsHint)
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return Config{}, errors.New("no scheme; expected one of " + formsHint)
	}
	s, ok := schemes[strings.ToLower(scheme)]
	if !ok {
		if !validScheme(scheme) {
			return Config{}, errors.New("no valid scheme; expected one of " + formsHint)
		}
		return Config{}, fmt.Errorf("unknown scheme %q; expected one of %s", scheme, formsHint)
	}
	scheme = strings.ToLower(scheme)
	c := Config{kind: s.kind, tls: s.tls, network: "tcp"}
	if scheme == "unix" {
		c.network = "unix"
	}

	if i := strings.IndexByte(rest, '#'); i >= 0 {
		return Config{}, errors.New("a fragment ('#') is not allowed; percent-encode a '#' in a password as %23")
	}
	rest, query, _ := strings.Cut(rest, "?")
	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	hosts := authority
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		if err := c.setUserinfo(authority[:i]); err != nil {
			return Config{}, err
		}
		hosts = authority[i+1:]
	}
	if strings.Contains(path, "@") {
		return Config{}, errors.New("the path contains '@'; percent-encode '/', '?', '#' and '@' in a user name or password")
	}

	switch {
	case c.network == "unix":
		if hosts != "" {
			return Config{}, errors.New("a unix:// URL takes no host; write unix:///path/to/redis.sock (three slashes)")
		}
		p, err := url.PathUnescape(path)
		if err != nil || p == "" || p == "/" {
			return Config{}, errors.New("a unix:// URL needs the socket's absolute path: unix:///path/to/redis.sock")
		}
		c.addrs = []string{p}
	default:
		port := defaultPort
		if c.kind == Sentinel {
			port = defaultSentinelPort
		}
		addrs, err := parseHosts(hosts, port)
		if err != nil {
			if strings.Contains(path+query, "@") {
				// Likely a password with an unencoded '/' or '?': the
				// "host" would be part of it, so do not quote it.
				return Config{}, errors.New("the host part is not valid and '@' follows it; percent-encode '/', '?', '#' and '@' in a user name or password")
			}
			return Config{}, err
		}
		if c.kind == Standalone && len(addrs) > 1 {
			return Config{}, fmt.Errorf("%s:// names one server, not %d; for several use redis-sentinel:// or redis-cluster://", scheme, len(addrs))
		}
		c.addrs = addrs
		if err := c.setDBPath(path); err != nil {
			return Config{}, err
		}
	}

	if err := c.setQuery(query); err != nil {
		return Config{}, err
	}
	if c.kind == Sentinel && c.master == "" {
		return Config{}, errors.New("a redis-sentinel:// URL needs the master's name: add ?master=NAME (as in the sentinels' 'sentinel monitor NAME …')")
	}
	return c, nil
}

func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// setUserinfo reads "user:password" (either may be empty, the ':' is
// required). A bare "word@" is refused rather than guessed at: it is as often
// a password as a user name, and a password must never be printed.
func (c *Config) setUserinfo(ui string) error {
	user, pass, ok := strings.Cut(ui, ":")
	if !ok {
		return errors.New("the part before '@' has no ':'; write :PASSWORD@ for a password alone, or USER:PASSWORD@")
	}
	var err error
	if c.username, err = url.PathUnescape(user); err != nil {
		return errors.New("the user name is not valid percent-encoding")
	}
	if c.password, err = url.PathUnescape(pass); err != nil {
		return errors.New("the password is not valid percent-encoding (write '%' as %25)")
	}
	if c.username != "" && c.password == "" {
		return errors.New("a user name without a password; Redis ACL users authenticate with both")
	}
	return nil
}

// setDBPath reads the "/db" path of a TCP URL.
func (c *Config) setDBPath(path string) error {
	p := strings.TrimPrefix(path, "/")
	if p == "" {
		return nil
	}
	db, err := parseDB(p)
	if err != nil {
		return fmt.Errorf("the path must be the database number, like /0: %w", err)
	}
	if c.kind == Cluster && db != 0 {
		return errors.New("Redis Cluster has only database 0; remove the /db from the redis-cluster:// URL and use a separate cluster (or key prefix) instead")
	}
	c.db = db
	return nil
}

func parseDB(s string) (int, error) {
	db, err := strconv.Atoi(s)
	if err != nil || db < 0 || strings.HasPrefix(s, "+") {
		if len(s) > 8 {
			s = s[:8] + "…"
		}
		return 0, fmt.Errorf("database %q is not a number of 0 or more", s)
	}
	return db, nil
}

// setQuery applies the query parameters. It parses them by hand rather than
// with url.ParseQuery so that an error never quotes a secret's value.
func (c *Config) setQuery(query string) error {
	if query == "" {
		return nil
	}
	seen := map[string]bool{}
	for pair := range strings.SplitSeq(query, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			return errors.New("a query parameter name is not valid percent-encoding")
		}
		o, ok := lookupOption(name)
		if !ok {
			return fmt.Errorf("unknown option %q; %s URLs accept %s", name, c.kind, strings.Join(c.optionNames(), ", "))
		}
		if !o.accepts(c.kind) {
			return fmt.Errorf("option %s does not apply to a %s URL; it accepts %s", name, c.kind, strings.Join(c.optionNames(), ", "))
		}
		if seen[name] {
			return fmt.Errorf("option %s is given twice", name)
		}
		seen[name] = true
		val, err := url.QueryUnescape(v)
		if err != nil {
			return fmt.Errorf("the value of %s is not valid percent-encoding", name)
		}
		if val == "" {
			return fmt.Errorf("option %s has no value", name)
		}
		if err := o.set(c, val); err != nil {
			return fmt.Errorf("option %s: %w", name, err)
		}
	}
	return nil
}

func (c *Config) optionNames() []string {
	var names []string
	for _, o := range options {
		if o.accepts(c.kind) && (o.name != "db" || c.network == "unix") {
			names = append(names, o.name)
		}
	}
	return names
}

func parseTimeout(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 {
			return 0, fmt.Errorf("%q is not a positive duration", s)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration like 500ms or 5s", s)
	}
	return d, nil
}

func parsePositive(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive whole number", s)
	}
	return n, nil
}

// parseHosts reads "host[:port][,host[:port]…]".
func parseHosts(s, defPort string) ([]string, error) {
	if s == "" {
		return nil, errors.New("no host; write host:port after ://")
	}
	var addrs []string
	for h := range strings.SplitSeq(s, ",") {
		a, err := parseHost(h, defPort)
		if err != nil {
			return nil, err
		}
		if slices.Contains(addrs, a) {
			return nil, fmt.Errorf("address %s is listed twice", a)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

func parseHost(h, defPort string) (string, error) {
	if h == "" {
		return "", errors.New("an empty host in the list; separate host:port pairs with single commas")
	}
	host, port := h, ""
	switch {
	case strings.HasPrefix(h, "["):
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", fmt.Errorf("host %q: missing ']' after the IPv6 address", h)
		}
		host = h[1:end]
		switch after := h[end+1:]; {
		case after == "":
		case strings.HasPrefix(after, ":"):
			port = after[1:]
		default:
			return "", fmt.Errorf("host %q: expected :port after ']'", h)
		}
		if !strings.Contains(host, ":") {
			return "", fmt.Errorf("host %q: brackets are for IPv6 addresses", h)
		}
	case strings.Count(h, ":") > 1:
		return "", fmt.Errorf("host %q: write an IPv6 address in brackets, like [::1]:6379", h)
	case strings.Contains(h, ":"):
		host, port, _ = strings.Cut(h, ":")
	}
	if host == "" {
		return "", fmt.Errorf("host %q has no host name", h)
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' || r == ':' || r == '%') {
			return "", fmt.Errorf("host %q contains %q; percent-encode '/', '?', '#' and '@' in a user name or password", h, r)
		}
	}
	if port == "" {
		port = defPort
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strings.HasPrefix(port, "+") {
		return "", fmt.Errorf("host %q: port must be a number from 1 to 65535", h)
	}
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + port, nil
	}
	return host + ":" + port, nil
}

// Kind is the topology the URL names.
func (c Config) Kind() Kind { return c.kind }

// DB is the database index; always 0 on a cluster.
func (c Config) DB() int { return c.db }

// Addrs are the addresses the URL lists: the server (or the socket's path),
// the sentinels, or the cluster's seed nodes.
func (c Config) Addrs() []string { return slices.Clone(c.addrs) }

// MasterName is the name Sentinel monitors the master under; "" unless
// Kind is Sentinel.
func (c Config) MasterName() string { return c.master }

// TLS reports whether connections use TLS.
func (c Config) TLS() bool { return c.tls }

// String is the URL in its canonical form with every password replaced by
// "xxxxx", fit for logs and error messages.
func (c Config) String() string {
	if c.kind == "" {
		return ""
	}
	var b strings.Builder
	scheme := "redis"
	switch {
	case c.network == "unix":
		scheme = "unix"
	case c.kind == Sentinel:
		scheme = "redis-sentinel"
	case c.kind == Cluster:
		scheme = "redis-cluster"
	}
	if c.tls {
		scheme = strings.Replace(scheme, "redis", "rediss", 1)
	}
	b.WriteString(scheme + "://")
	if c.password != "" {
		b.WriteString(url.UserPassword(c.username, redacted).String() + "@")
	}
	q := url.Values{}
	if c.network == "unix" {
		b.WriteString((&url.URL{Path: c.addrs[0]}).EscapedPath())
		if c.db != 0 {
			q.Set("db", strconv.Itoa(c.db))
		}
	} else {
		b.WriteString(strings.Join(c.addrs, ","))
		if c.kind != Cluster {
			b.WriteString("/" + strconv.Itoa(c.db))
		}
	}
	if c.master != "" {
		q.Set("master", c.master)
	}
	if c.sentinelUsername != "" {
		q.Set("sentinel_username", c.sentinelUsername)
	}
	if c.sentinelPassword != "" {
		q.Set("sentinel_password", redacted)
	}
	for name, d := range map[string]time.Duration{"dial_timeout": c.dialTimeout, "read_timeout": c.readTimeout, "write_timeout": c.writeTimeout} {
		if d != 0 {
			q.Set(name, d.String())
		}
	}
	if c.poolSize != 0 {
		q.Set("pool_size", strconv.Itoa(c.poolSize))
	}
	if c.maxRedirects != 0 {
		q.Set("max_redirects", strconv.Itoa(c.maxRedirects))
	}
	if len(q) > 0 {
		b.WriteString("?" + q.Encode())
	}
	return b.String()
}
