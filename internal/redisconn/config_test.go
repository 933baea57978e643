package redisconn_test

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/rapportsync/rapport/internal/redisconn"
)

// secret is the password of every test URL that has one; no error and no
// String may contain it.
const secret = "s3cret"

var tlsPresence = cmp.Comparer(func(a, b *tls.Config) bool { return (a == nil) == (b == nil) })

func TestParse(t *testing.T) {
	tests := []struct {
		url    string
		kind   redisconn.Kind
		str    string // String(): canonical, redacted
		db     int
		addrs  []string
		master string
		tls    bool
		asynq  asynq.RedisConnOpt
	}{
		{
			url: "redis://127.0.0.1:6379/0", kind: redisconn.Standalone,
			str: "redis://127.0.0.1:6379/0", addrs: []string{"127.0.0.1:6379"},
			asynq: asynq.RedisClientOpt{Network: "tcp", Addr: "127.0.0.1:6379"},
		},
		{
			url: "redis://localhost", kind: redisconn.Standalone,
			str: "redis://localhost:6379/0", addrs: []string{"localhost:6379"},
		},
		{
			url: "REDIS://Redis.Internal:6380/", kind: redisconn.Standalone,
			str: "redis://Redis.Internal:6380/0", addrs: []string{"Redis.Internal:6380"},
		},
		{
			url: "redis://:s3cret@redis.internal:6380/2", kind: redisconn.Standalone,
			str: "redis://:xxxxx@redis.internal:6380/2", db: 2, addrs: []string{"redis.internal:6380"},
			asynq: asynq.RedisClientOpt{Network: "tcp", Addr: "redis.internal:6380", Password: secret, DB: 2},
		},
		{
			// Reserved characters in a password are percent-encoded.
			url: "redis://rapport:s3cret%40%2F%3F%23%25@10.0.0.5/3", kind: redisconn.Standalone,
			str: "redis://rapport:xxxxx@10.0.0.5:6379/3", db: 3, addrs: []string{"10.0.0.5:6379"},
			asynq: asynq.RedisClientOpt{Network: "tcp", Addr: "10.0.0.5:6379", Username: "rapport", Password: secret + "@/?#%", DB: 3},
		},
		{
			url: "rediss://:s3cret@redis.example.com:6380/1?dial_timeout=2s&read_timeout=500ms&write_timeout=3&pool_size=20", kind: redisconn.Standalone,
			str: "rediss://:xxxxx@redis.example.com:6380/1?dial_timeout=2s&pool_size=20&read_timeout=500ms&write_timeout=3s",
			db:  1, addrs: []string{"redis.example.com:6380"}, tls: true,
			asynq: asynq.RedisClientOpt{Network: "tcp", Addr: "redis.example.com:6380", Password: secret, DB: 1,
				DialTimeout: 2 * time.Second, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 3 * time.Second, PoolSize: 20, TLSConfig: &tls.Config{}},
		},
		{
			url: "redis://[::1]:6379/4", kind: redisconn.Standalone,
			str: "redis://[::1]:6379/4", db: 4, addrs: []string{"[::1]:6379"},
		},
		{
			url: "redis://[fe80::1]", kind: redisconn.Standalone,
			str: "redis://[fe80::1]:6379/0", addrs: []string{"[fe80::1]:6379"},
		},
		{
			url: "unix:///run/redis/redis.sock", kind: redisconn.Standalone,
			str: "unix:///run/redis/redis.sock", addrs: []string{"/run/redis/redis.sock"},
			asynq: asynq.RedisClientOpt{Network: "unix", Addr: "/run/redis/redis.sock"},
		},
		{
			url: "unix://:s3cret@/run/redis%20x/redis.sock?db=5", kind: redisconn.Standalone,
			str: "unix://:xxxxx@/run/redis%20x/redis.sock?db=5", db: 5, addrs: []string{"/run/redis x/redis.sock"},
			asynq: asynq.RedisClientOpt{Network: "unix", Addr: "/run/redis x/redis.sock", Password: secret, DB: 5},
		},
		{
			url: "redis-sentinel://:s3cret@s1:26379,s2,10.0.0.3:26380/1?master=mymaster&sentinel_password=s3cret", kind: redisconn.Sentinel,
			str: "redis-sentinel://:xxxxx@s1:26379,s2:26379,10.0.0.3:26380/1?master=mymaster&sentinel_password=xxxxx",
			db:  1, addrs: []string{"s1:26379", "s2:26379", "10.0.0.3:26380"}, master: "mymaster",
			asynq: asynq.RedisFailoverClientOpt{MasterName: "mymaster", SentinelAddrs: []string{"s1:26379", "s2:26379", "10.0.0.3:26380"},
				SentinelPassword: secret, Password: secret, DB: 1},
		},
		{
			url: "redis-sentinel://127.0.0.1?master=rapport", kind: redisconn.Sentinel,
			str: "redis-sentinel://127.0.0.1:26379/0?master=rapport", addrs: []string{"127.0.0.1:26379"}, master: "rapport",
		},
		{
			url: "rediss-sentinel://app:s3cret@s1,s2/0?master=m&sentinel_username=sent&sentinel_password=s3cret&dial_timeout=1s", kind: redisconn.Sentinel,
			str:   "rediss-sentinel://app:xxxxx@s1:26379,s2:26379/0?dial_timeout=1s&master=m&sentinel_password=xxxxx&sentinel_username=sent",
			addrs: []string{"s1:26379", "s2:26379"}, master: "m", tls: true,
			asynq: asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"s1:26379", "s2:26379"}, SentinelUsername: "sent",
				SentinelPassword: secret, Username: "app", Password: secret, DialTimeout: time.Second, TLSConfig: &tls.Config{}},
		},
		{
			url: "redis-cluster://n1:7000,n2:7001,n3:7002", kind: redisconn.Cluster,
			str: "redis-cluster://n1:7000,n2:7001,n3:7002", addrs: []string{"n1:7000", "n2:7001", "n3:7002"},
			asynq: asynq.RedisClusterClientOpt{Addrs: []string{"n1:7000", "n2:7001", "n3:7002"}},
		},
		{
			// "/0" is the one database a cluster has: harmless, accepted.
			url: "rediss-cluster://app:s3cret@n1/0?max_redirects=5&pool_size=50", kind: redisconn.Cluster,
			str: "rediss-cluster://app:xxxxx@n1:6379?max_redirects=5&pool_size=50", addrs: []string{"n1:6379"}, tls: true,
			asynq: asynq.RedisClusterClientOpt{Addrs: []string{"n1:6379"}, MaxRedirects: 5, Username: "app", Password: secret, TLSConfig: &tls.Config{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			cfg, err := redisconn.Parse(tt.url)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := struct {
				Kind   redisconn.Kind
				Str    string
				DB     int
				Addrs  []string
				Master string
				TLS    bool
			}{cfg.Kind(), cfg.String(), cfg.DB(), cfg.Addrs(), cfg.MasterName(), cfg.TLS()}
			want := got
			want.Kind, want.Str, want.DB, want.Addrs, want.Master, want.TLS = tt.kind, tt.str, tt.db, tt.addrs, tt.master, tt.tls
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if tt.asynq != nil {
				if diff := cmp.Diff(tt.asynq, cfg.AsynqConnOpt(), tlsPresence); diff != "" {
					t.Errorf("AsynqConnOpt (-want +got):\n%s", diff)
				}
			}
			if strings.Contains(cfg.String(), secret) {
				t.Errorf("String() shows the password: %s", cfg)
			}
			// String is a URL Parse reads back to the same configuration
			// (but for the redacted passwords).
			again, err := redisconn.Parse(cfg.String())
			if err != nil {
				t.Fatalf("Parse(String()): %v", err)
			}
			if again.String() != cfg.String() {
				t.Errorf("Parse(String()).String() = %s, want %s", again, cfg)
			}
		})
	}
}

func TestParseClient(t *testing.T) {
	for _, url := range []string{
		"redis://127.0.0.1:6379/2",
		"unix:///tmp/redis.sock",
		"redis-sentinel://127.0.0.1:26379/0?master=m",
		"redis-cluster://127.0.0.1:7000,127.0.0.1:7001",
	} {
		cfg, err := redisconn.Parse(url)
		if err != nil {
			t.Fatalf("Parse(%s): %v", url, err)
		}
		c := cfg.Client()
		defer c.Close()
		switch c := c.(type) {
		case *redis.ClusterClient:
			if cfg.Kind() != redisconn.Cluster {
				t.Errorf("%s: Client() is a cluster client", url)
			} else if diff := cmp.Diff(cfg.Addrs(), c.Options().Addrs); diff != "" {
				t.Errorf("%s: cluster addrs (-want +got):\n%s", url, diff)
			}
		case *redis.Client:
			switch cfg.Kind() {
			case redisconn.Cluster:
				t.Errorf("%s: Client() is not a cluster client", url)
			case redisconn.Standalone:
				if o := c.Options(); o.Addr != cfg.Addrs()[0] || o.DB != cfg.DB() {
					t.Errorf("%s: client on %s db %d", url, o.Addr, o.DB)
				}
			}
		default:
			t.Errorf("%s: Client() is a %T", url, c)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct {
		url  string
		want string // a part of the error
	}{
		{"", "empty; expected one of redis://"},
		{"   ", "empty"},
		{"127.0.0.1:6379", "no scheme"},
		{"s3cret@127.0.0.1:6379", "no scheme"},
		{"http://h", `unknown scheme "http"`},
		{"redis+sentinel://h", `unknown scheme "redis+sentinel"`},
		{"redis://:s3cret@", "no host"},
		{"redis://:s3cret@/0", "no host"},
		{"redis://h1,h2", "redis:// names one server, not 2; for several use redis-sentinel:// or redis-cluster://"},
		{"redis://h:abc", `host "h:abc": port must be a number from 1 to 65535`},
		{"redis://h:70000", "port must be"},
		{"redis://h:0", "port must be"},
		{"redis://::1:6379", "IPv6 address in brackets"},
		{"redis://[::1", "missing ']'"},
		{"redis://[h]:1", "brackets are for IPv6"},
		{"redis://h/x", `the path must be the database number, like /0: database "x"`},
		{"redis://h/-1", "database"},
		{"redis://h/1/2", "database"},
		{"redis://s3cret@h", "the part before '@' has no ':'"},
		{"redis://user:@h", "a user name without a password"},
		{"redis://:s3c%zzret@h", "the password is not valid percent-encoding"},
		{"redis://:s3cret@h?foo=1", `unknown option "foo"; standalone URLs accept dial_timeout, read_timeout, write_timeout, pool_size`},
		{"redis://h?db=2", "db= is for unix:// URLs"},
		{"redis://h?master=x", "option master does not apply to a standalone URL"},
		{"redis://h?max_redirects=2", "does not apply"},
		{"redis://h?dial_timeout=-1", "not a positive duration"},
		{"redis://h?dial_timeout=soon", "not a positive duration like 500ms or 5s"},
		{"redis://h?pool_size=0", "not a positive whole number"},
		{"redis://h?pool_size=", "has no value"},
		{"redis://h?dial_timeout=1s&dial_timeout=2s", "given twice"},
		{"redis-sentinel://:s3cret@s1", "needs the master's name: add ?master=NAME"},
		{"redis-sentinel://s1?master=my%20master", "must not contain spaces"},
		{"redis-sentinel://s1?master=m&sentinel_password=s3c%zzret", "the value of sentinel_password is not valid percent-encoding"},
		{"redis-cluster://n1/2", "Redis Cluster has only database 0"},
		{"redis-cluster://n1,n1", "address n1:6379 is listed twice"},
		{"redis-cluster://n1,,n2", "an empty host in the list"},
		{"redis-cluster://n1?db=1", "does not apply"},
		{"unix://host/run/redis.sock", "a unix:// URL takes no host"},
		{"unix://", "needs the socket's absolute path"},
		{"unix:///", "needs the socket's absolute path"},
		{"unix:///run/redis.sock?dial_timeout=x", "dial_timeout"},
		// Unencoded reserved characters in a password: an error that
		// quotes none of it.
		{"redis://:pa/s3cret@h", "percent-encode"},
		{"redis://:pa?s3cret@h:6379", "percent-encode"},
		{"redis://:pa#s3cret@h", "fragment"},
		{"redis://u:s3cret@h:s3cret", "port must be"},
	} {
		t.Run(tt.url, func(t *testing.T) {
			_, err := redisconn.Parse(tt.url)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want an error containing %q", tt.url, tt.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "redis url: ") || !strings.Contains(msg, tt.want) {
				t.Errorf("Parse(%q) = %q, want %q in it", tt.url, msg, tt.want)
			}
			if strings.Contains(msg, secret) && !strings.Contains(tt.url, "h:"+secret) {
				t.Errorf("error shows the password: %s", msg)
			}
		})
	}
}

// FuzzParse checks that Parse never panics, that what it accepts prints as
// a URL it accepts again, and that a password written into the URL (even
// with characters that should have been percent-encoded) shows up in
// neither an error nor String.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"a/b", "a?b", "a#b", "a@b", "a:b", "p%40ss", "[::1]", "x,y", "?master=m"} {
		f.Add(s, uint8(0))
	}
	prefixes := []string{"redis://:", "redis://user:", "rediss://:", "unix://:", "redis-sentinel://:", "redis-cluster://u:"}
	suffixes := []string{"@h:6379/0", "@/run/r.sock", "@s1,s2/1?master=m", "@n1,n2"}
	f.Fuzz(func(t *testing.T, password string, form uint8) {
		raw := prefixes[int(form)%len(prefixes)] + password + suffixes[int(form/8)%len(suffixes)]
		cfg, err := redisconn.Parse(raw)
		// Only a password long enough not to occur by chance in the rest
		// of the message is checked.
		leaks := func(s string) bool {
			return len(password) >= 6 && strings.Contains(s, password) && !strings.Contains(raw[len(raw)-len(suffixes[int(form/8)%len(suffixes)]):], password)
		}
		if err != nil {
			if leaks(err.Error()) {
				t.Fatalf("Parse(%q) error shows the password: %v", raw, err)
			}
			return
		}
		if leaks(cfg.String()) && password != "xxxxx" {
			t.Fatalf("Parse(%q).String() shows the password: %s", raw, cfg)
		}
		again, err := redisconn.Parse(cfg.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %s, which Parse refuses: %v", raw, cfg, err)
		}
		if again.String() != cfg.String() {
			t.Fatalf("round trip of %q: %s, then %s", raw, cfg, again)
		}
	})
}
