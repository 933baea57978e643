package credentials

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The tests share one database. Every vault uses keyA first, except the
// rotation test's old vault, the only one that seals with keyB, so Rotate's
// sweep over all rows only ever meets rows it can open.
var (
	keyA = Key{ID: "ka", Secret: bytes.Repeat([]byte{0xA1}, 32)}
	keyB = Key{ID: "kb", Secret: bytes.Repeat([]byte{0xB2}, 32)}
)

// clock is a movable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(t time.Time) *clock { return &clock{now: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// tokenServer is a fake OAuth token endpoint answering refresh grants.
type tokenServer struct {
	*httptest.Server
	calls atomic.Int64
	mu    sync.Mutex
	seen  []string // refresh tokens received, in order
	// answer returns the status and JSON body for the n-th call (1-based).
	answer func(n int64, refreshToken string) (int, any)
	delay  time.Duration
}

func newTokenServer(t *testing.T, answer func(n int64, refreshToken string) (int, any)) *tokenServer {
	t.Helper()
	ts := &tokenServer{answer: answer}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.Form.Get("grant_type") != "refresh_token" {
			http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
			return
		}
		n := ts.calls.Add(1)
		rt := r.Form.Get("refresh_token")
		ts.mu.Lock()
		ts.seen = append(ts.seen, rt)
		ts.mu.Unlock()
		if ts.delay > 0 {
			time.Sleep(ts.delay)
		}
		status, body := ts.answer(n, rt)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tokenServer) refreshTokensSeen() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.seen...)
}

// rotating answers call n with access-(n+1) and refresh-(n+1), rotating
// the refresh token each time.
func rotating(n int64, _ string) (int, any) {
	return http.StatusOK, map[string]any{
		"access_token":  fmt.Sprintf("access-%d", n+1),
		"refresh_token": fmt.Sprintf("refresh-%d", n+1),
		"token_type":    "Bearer",
		"expires_in":    3600,
	}
}

type fixture struct {
	pool   *pgxpool.Pool
	clock  *clock
	tokens *tokenServer
	logs   *syncBuffer
	reauth atomic.Int64
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFixture(t *testing.T, start time.Time, answer func(int64, string) (int, any)) *fixture {
	t.Helper()
	f := &fixture{pool: testenv.DB(t), clock: newClock(start), logs: &syncBuffer{}}
	f.tokens = newTokenServer(t, answer)
	t.Cleanup(func() {
		// Whatever happened, no token may reach the logs.
		if logs := f.logs.String(); strings.Contains(logs, "access-") || strings.Contains(logs, "refresh-") {
			t.Errorf("a token reached the logs:\n%s", logs)
		}
	})
	return f
}

func (f *fixture) vault(t *testing.T, keys ...Key) *Vault {
	t.Helper()
	if len(keys) == 0 {
		keys = []Key{keyA}
	}
	oc := func(name string) *oauth2.Config {
		return &oauth2.Config{
			ClientID: name + "-client", ClientSecret: name + "-secret",
			Endpoint: oauth2.Endpoint{AuthURL: f.tokens.URL + "/authorize", TokenURL: f.tokens.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
		}
	}
	v, err := New(Config{
		Pool:          f.pool,
		Keys:          keys,
		OAuth:         map[string]*oauth2.Config{"google": oc("google"), "hubspot": oc("hubspot")},
		Logger:        slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Clock:         f.clock.Now,
		OnNeedsReauth: func(string, string) { f.reauth.Add(1) },
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

func (f *fixture) workspace(t *testing.T) string {
	t.Helper()
	var id string
	if err := f.pool.QueryRow(context.Background(),
		`INSERT INTO workspaces (name) VALUES ($1) RETURNING id::text`, t.Name()).Scan(&id); err != nil {
		t.Fatalf("create workspace: %v", err)
	}
	return id
}

func (f *fixture) status(t *testing.T, connID string) (status string, lastError *string) {
	t.Helper()
	if err := f.pool.QueryRow(context.Background(),
		`SELECT status, last_error FROM connections WHERE id = $1`, connID).Scan(&status, &lastError); err != nil {
		t.Fatalf("read connection: %v", err)
	}
	return status, lastError
}

func put(t *testing.T, v *Vault, ws, provider, account string, tok *oauth2.Token) string {
	t.Helper()
	id, err := v.Put(context.Background(), ws, provider, account, tok)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	return id
}

func token(t *testing.T, v *Vault, connID string) *oauth2.Token {
	t.Helper()
	tok, err := v.TokenSource(connID).Token()
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	kr, err := newKeyring([]Key{keyA, keyB})
	if err != nil {
		t.Fatal(err)
	}
	in := &oauth2.Token{AccessToken: "access-1", RefreshToken: "refresh-1", TokenType: "Bearer",
		Expiry: time.Date(2026, 3, 25, 14, 0, 0, 0, time.UTC)}
	keyID, ct, err := kr.seal("11111111-1111-4111-8111-111111111111", in)
	if err != nil {
		t.Fatal(err)
	}
	if keyID != "ka" {
		t.Errorf("sealed with %q, want the first key ka", keyID)
	}
	if bytes.Contains(ct, []byte("access-1")) || bytes.Contains(ct, []byte("refresh-1")) {
		t.Error("ciphertext holds the plaintext token")
	}
	out, err := kr.open("11111111-1111-4111-8111-111111111111", keyID, ct)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out, cmp.AllowUnexported(oauth2.Token{})); diff != "" {
		t.Errorf("round trip (-in +out):\n%s", diff)
	}
	_, ct2, _ := kr.seal("11111111-1111-4111-8111-111111111111", in)
	if bytes.Equal(ct, ct2) {
		t.Error("two seals of one token are equal: nonce not random")
	}
	if _, err := kr.open("22222222-2222-4222-8222-222222222222", keyID, ct); err == nil {
		t.Error("opened a ciphertext under another connection id")
	}
	if _, err := kr.open("11111111-1111-4111-8111-111111111111", "kb", ct); err == nil {
		t.Error("opened a ciphertext with the wrong key")
	}
	if _, err := kr.open("11111111-1111-4111-8111-111111111111", "nope", ct); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown key id: err = %v, want one naming the key", err)
	}
	ct[len(ct)-1] ^= 1
	if _, err := kr.open("11111111-1111-4111-8111-111111111111", keyID, ct); err == nil {
		t.Error("opened a tampered ciphertext")
	}
	if _, err := kr.open("11111111-1111-4111-8111-111111111111", keyID, ct[:5]); err == nil {
		t.Error("opened a truncated ciphertext")
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	pool := testenv.DB(t)
	for name, cfg := range map[string]Config{
		"no pool":   {Keys: []Key{keyA}},
		"no keys":   {Pool: pool},
		"short key": {Pool: pool, Keys: []Key{{ID: "x", Secret: []byte("short")}}},
		"dup ids":   {Pool: pool, Keys: []Key{keyA, keyA}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	// An unconfigured provider may come as a nil client.
	if _, err := New(Config{Pool: pool, Keys: []Key{keyA}, OAuth: map[string]*oauth2.Config{"google": nil}}); err != nil {
		t.Errorf("nil OAuth client: %v", err)
	}
}

func TestRefreshWithoutOAuthClient(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Now(), rotating)
	v, err := New(Config{Pool: f.pool, Keys: []Key{keyA}, OAuth: map[string]*oauth2.Config{"google": nil}, Clock: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	id := put(t, v, f.workspace(t), "google", "rep@northwind.test",
		&oauth2.Token{AccessToken: "access-0", RefreshToken: "refresh-0", Expiry: f.clock.Now()})
	if _, err := v.TokenSource(id).Token(); err == nil || errors.Is(err, ErrNeedsReauth) || !strings.Contains(err.Error(), "no OAuth client") {
		t.Errorf("Token = %v, want a configuration error", err)
	}
	if status, _ := f.status(t, id); status != StatusActive {
		t.Errorf("status %s, want active", status)
	}
}

func TestPutAndToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Now(), rotating)
	v := f.vault(t)
	ws := f.workspace(t)
	exp := f.clock.Now().Add(time.Hour).Truncate(time.Second)
	id := put(t, v, ws, "google", "rep@northwind.test", &oauth2.Token{AccessToken: "access-1", RefreshToken: "refresh-1", Expiry: exp})

	var keyID string
	var ct []byte
	var dbExp time.Time
	if err := f.pool.QueryRow(context.Background(), `SELECT token_key_id, token_ciphertext, token_expires_at FROM connections WHERE id = $1`, id).
		Scan(&keyID, &ct, &dbExp); err != nil {
		t.Fatal(err)
	}
	if keyID != "ka" || bytes.Contains(ct, []byte("access-1")) || !dbExp.Equal(exp) {
		t.Errorf("stored key %q, expiry %v (want ka, %v), plaintext visible: %v", keyID, dbExp, exp, bytes.Contains(ct, []byte("access-1")))
	}

	got := token(t, v, id)
	if got.AccessToken != "access-1" || !got.Expiry.Equal(exp) {
		t.Errorf("token = %q expiring %v, want access-1 expiring %v", got.AccessToken, got.Expiry, exp)
	}
	if got.RefreshToken != "" {
		t.Error("the refresh token left the vault")
	}
	if n := f.tokens.calls.Load(); n != 0 {
		t.Errorf("%d token endpoint calls for a valid token", n)
	}
	if s, err := v.Status(context.Background(), id); err != nil || s != StatusActive {
		t.Errorf("Status = %q, %v; want active", s, err)
	}

	// Errors: unknown workspace, unknown connection, malformed id.
	if _, err := v.Put(context.Background(), "00000000-0000-4000-8000-000000000000", "google", "x@y.test", &oauth2.Token{AccessToken: "access-x"}); err == nil {
		t.Error("Put into an unknown workspace succeeded")
	}
	if _, err := v.Put(context.Background(), ws, "google", "x@y.test", &oauth2.Token{}); err == nil {
		t.Error("Put of an empty token succeeded")
	}
	for _, bad := range []string{"00000000-0000-4000-8000-000000000000", "not-a-uuid"} {
		if _, err := v.TokenSource(bad).Token(); !errors.Is(err, ErrNotFound) {
			t.Errorf("Token(%q) = %v, want ErrNotFound", bad, err)
		}
		if _, err := v.Status(context.Background(), bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Status(%q) = %v, want ErrNotFound", bad, err)
		}
		if err := v.MarkNeedsReauth(context.Background(), bad, "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("MarkNeedsReauth(%q) = %v, want ErrNotFound", bad, err)
		}
	}
}

func TestCiphertextBoundToRow(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Now(), rotating)
	v := f.vault(t)
	ws := f.workspace(t)
	exp := f.clock.Now().Add(time.Hour)
	a := put(t, v, ws, "google", "a@northwind.test", &oauth2.Token{AccessToken: "access-a", RefreshToken: "refresh-a", Expiry: exp})
	b := put(t, v, ws, "google", "b@northwind.test", &oauth2.Token{AccessToken: "access-b", RefreshToken: "refresh-b", Expiry: exp})
	if _, err := f.pool.Exec(context.Background(), `
		UPDATE connections SET token_ciphertext = (SELECT token_ciphertext FROM connections WHERE id = $1) WHERE id = $2`, a, b); err != nil {
		t.Fatal(err)
	}
	if tok, err := v.TokenSource(b).Token(); err == nil {
		t.Fatalf("a ciphertext moved to another row opened there (access token %q)", tok.AccessToken)
	}
	if got := token(t, v, a); got.AccessToken != "access-a" {
		t.Errorf("source row: token %q, want access-a", got.AccessToken)
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Now(), rotating)
	old := f.vault(t, keyB)
	ws := f.workspace(t)
	exp := f.clock.Now().Add(time.Hour)
	var ids []string
	for i := range 3 {
		ids = append(ids, put(t, old, ws, "google", fmt.Sprintf("u%d@northwind.test", i),
			&oauth2.Token{AccessToken: fmt.Sprintf("access-%d", i), RefreshToken: "refresh-x", Expiry: exp}))
	}

	// The new key first, the old one still configured: old rows open.
	both := f.vault(t, keyA, keyB)
	if got := token(t, both, ids[0]); got.AccessToken != "access-0" {
		t.Errorf("token before rotation = %q", got.AccessToken)
	}
	// A vault without the old key cannot open them yet.
	onlyNew := f.vault(t, keyA)
	if _, err := onlyNew.TokenSource(ids[1]).Token(); err == nil || !strings.Contains(err.Error(), `"kb"`) {
		t.Errorf("Token without the sealing key: err = %v, want one naming key kb", err)
	}
	n, err := both.Rotate(context.Background())
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if n != len(ids) {
		t.Errorf("Rotate re-encrypted %d connections, want %d", n, len(ids))
	}
	var left int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM connections WHERE token_key_id = 'kb'`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d connections still sealed with the old key", left)
	}
	// The old key can go now.
	for i, id := range ids {
		if got := token(t, onlyNew, id); got.AccessToken != fmt.Sprintf("access-%d", i) {
			t.Errorf("after rotation, connection %d: token %q", i, got.AccessToken)
		}
	}
	if n, err := both.Rotate(context.Background()); err != nil || n != 0 {
		t.Errorf("second Rotate = %d, %v; want 0, nil", n, err)
	}
	if c := f.tokens.calls.Load(); c != 0 {
		t.Errorf("%d token endpoint calls during rotation", c)
	}
}

func TestRefreshBeforeExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Now(), rotating)
	v := f.vault(t)
	ws := f.workspace(t)
	id := put(t, v, ws, "google", "rep@northwind.test",
		&oauth2.Token{AccessToken: "access-0", RefreshToken: "refresh-0", Expiry: f.clock.Now().Add(40 * time.Second)})

	if got := token(t, v, id); got.AccessToken != "access-0" || f.tokens.calls.Load() != 0 {
		t.Fatalf("40 s before expiry: token %q after %d calls, want access-0 after 0", got.AccessToken, f.tokens.calls.Load())
	}
	f.clock.Add(11 * time.Second) // 29 s left: inside the 30 s margin
	got := token(t, v, id)
	if got.AccessToken != "access-2" || f.tokens.calls.Load() != 1 {
		t.Fatalf("29 s before expiry: token %q after %d calls, want access-2 after 1", got.AccessToken, f.tokens.calls.Load())
	}
	if want := f.clock.Now().Add(time.Hour); !got.Expiry.Equal(want) {
		t.Errorf("refreshed expiry %v, want %v (clock + expires_in)", got.Expiry, want)
	}
	for range 5 {
		token(t, v, id)
	}
	if n := f.tokens.calls.Load(); n != 1 {
		t.Errorf("%d token endpoint calls, want 1", n)
	}
	var dbExp time.Time
	if err := f.pool.QueryRow(context.Background(), `SELECT token_expires_at FROM connections WHERE id = $1`, id).Scan(&dbExp); err != nil {
		t.Fatal(err)
	}
	if !dbExp.Equal(got.Expiry.Truncate(time.Microsecond)) { // PostgreSQL keeps microseconds
		t.Errorf("token_expires_at %v, want %v", dbExp, got.Expiry)
	}
}

func TestConcurrentRefreshAcrossVaults(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Now(), rotating)
	f.tokens.delay = 100 * time.Millisecond
	v1, v2 := f.vault(t), f.vault(t) // two processes sharing one database
	ws := f.workspace(t)
	id := put(t, v1, ws, "google", "rep@northwind.test",
		&oauth2.Token{AccessToken: "access-0", RefreshToken: "refresh-1", Expiry: f.clock.Now().Add(-time.Minute)})

	start := make(chan struct{})
	var wg sync.WaitGroup
	got := make([]string, 50)
	errs := make([]error, 50)
	for i := range 50 {
		v := v1
		if i%2 == 1 {
			v = v2
		}
		wg.Go(func() {
			<-start
			tok, err := v.TokenSource(id).Token()
			errs[i] = err
			if tok != nil {
				got[i] = tok.AccessToken
			}
		})
	}
	close(start)
	wg.Wait()
	for i := range 50 {
		if errs[i] != nil || got[i] != "access-2" {
			t.Errorf("goroutine %d: token %q, err %v; want access-2", i, got[i], errs[i])
		}
	}
	if n := f.tokens.calls.Load(); n != 1 {
		t.Errorf("%d token endpoint calls for 50 concurrent requests on two vaults, want 1", n)
	}

	// The rotated refresh token was persisted: the next refresh sends it.
	f.clock.Add(2 * time.Hour)
	if got := token(t, v2, id); got.AccessToken != "access-3" {
		t.Errorf("second refresh: token %q, want access-3", got.AccessToken)
	}
	if diff := cmp.Diff([]string{"refresh-1", "refresh-2"}, f.tokens.refreshTokensSeen()); diff != "" {
		t.Errorf("refresh tokens sent (-want +got):\n%s", diff)
	}
}

func TestRefreshKeepsRefreshTokenWhenNotRotated(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Now(), func(n int64, _ string) (int, any) {
		return http.StatusOK, map[string]any{"access_token": fmt.Sprintf("access-%d", n+1), "expires_in": 3600}
	})
	v := f.vault(t)
	id := put(t, v, f.workspace(t), "google", "rep@northwind.test",
		&oauth2.Token{AccessToken: "access-0", RefreshToken: "refresh-keep", Expiry: f.clock.Now()})
	token(t, v, id)
	f.clock.Add(2 * time.Hour)
	token(t, v, id)
	if diff := cmp.Diff([]string{"refresh-keep", "refresh-keep"}, f.tokens.refreshTokensSeen()); diff != "" {
		t.Errorf("refresh tokens sent (-want +got):\n%s", diff)
	}
}

func TestGrantRejected(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		provider string
		body     any
		code     string
	}{
		{"google", map[string]any{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, "invalid_grant"},
		{"hubspot", map[string]any{"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token", "correlationId": "c-1"}, "BAD_REFRESH_TOKEN"},
	} {
		t.Run(tc.provider, func(t *testing.T) {
			t.Parallel()
			good := atomic.Bool{}
			f := newFixture(t, time.Now(), func(n int64, _ string) (int, any) {
				if good.Load() {
					return rotating(n, "")
				}
				return http.StatusBadRequest, tc.body
			})
			v := f.vault(t)
			ws := f.workspace(t)
			tok := &oauth2.Token{AccessToken: "access-0", RefreshToken: "refresh-dead", Expiry: f.clock.Now().Add(-time.Second)}
			id := put(t, v, ws, tc.provider, "acct-1", tok)

			_, err := v.TokenSource(id).Token()
			if !errors.Is(err, ErrNeedsReauth) {
				t.Fatalf("Token = %v, want ErrNeedsReauth", err)
			}
			status, lastErr := f.status(t, id)
			if status != StatusNeedsReauth || lastErr == nil || !strings.Contains(*lastErr, tc.code) {
				t.Errorf("connection %s, last error %v; want needs_reauth naming %s", status, lastErr, tc.code)
			}
			if n := f.reauth.Load(); n != 1 {
				t.Errorf("OnNeedsReauth called %d times, want 1", n)
			}
			if !strings.Contains(f.logs.String(), id) {
				t.Error("needs_reauth not logged with the connection id")
			}

			// No retry storm: parked connections never reach the token endpoint.
			for range 10 {
				if _, err := v.TokenSource(id).Token(); !errors.Is(err, ErrNeedsReauth) {
					t.Fatalf("Token on a parked connection = %v, want ErrNeedsReauth", err)
				}
			}
			if n := f.tokens.calls.Load(); n != 1 {
				t.Errorf("%d token endpoint calls, want 1", n)
			}

			// Re-authorisation: Put again makes it active with the new grant.
			good.Store(true)
			id2 := put(t, v, ws, tc.provider, "acct-1", &oauth2.Token{AccessToken: "access-new", RefreshToken: "refresh-new", Expiry: f.clock.Now().Add(-time.Second)})
			if id2 != id {
				t.Errorf("re-authorisation made connection %s, want the same %s", id2, id)
			}
			if status, lastErr := f.status(t, id); status != StatusActive || lastErr != nil {
				t.Errorf("after Put: %s, last error %v; want active, none", status, lastErr)
			}
			if got := token(t, v, id); got.AccessToken != "access-3" {
				t.Errorf("after re-authorisation: token %q, want access-3", got.AccessToken)
			}
			if seen := f.tokens.refreshTokensSeen(); seen[len(seen)-1] != "refresh-new" {
				t.Errorf("refreshed with %q, want the new refresh token", seen[len(seen)-1])
			}
		})
	}
}

func TestTransientRefreshFailureKeepsConnectionActive(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Now(), func(n int64, _ string) (int, any) {
		if n == 1 {
			return http.StatusServiceUnavailable, map[string]any{"error": "temporarily_unavailable"}
		}
		return rotating(n, "")
	})
	v := f.vault(t)
	id := put(t, v, f.workspace(t), "google", "rep@northwind.test",
		&oauth2.Token{AccessToken: "access-0", RefreshToken: "refresh-1", Expiry: f.clock.Now()})
	_, err := v.TokenSource(id).Token()
	if err == nil || errors.Is(err, ErrNeedsReauth) {
		t.Fatalf("Token = %v, want a transient error", err)
	}
	if status, _ := f.status(t, id); status != StatusActive {
		t.Errorf("status %s after a 503, want active", status)
	}
	if got := token(t, v, id); got.AccessToken != "access-3" {
		t.Errorf("retry: token %q, want access-3", got.AccessToken)
	}
}

func TestMarkNeedsReauthAndRevoked(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Now(), rotating)
	v := f.vault(t)
	ws := f.workspace(t)
	exp := f.clock.Now().Add(time.Hour)
	a := put(t, v, ws, "google", "a@northwind.test", &oauth2.Token{AccessToken: "access-a", RefreshToken: "refresh-a", Expiry: exp})
	b := put(t, v, ws, "hubspot", "4711", &oauth2.Token{AccessToken: "access-b", RefreshToken: "refresh-b", Expiry: exp})

	if err := v.MarkNeedsReauth(context.Background(), a, "google answered 401 to events.list"); err != nil {
		t.Fatal(err)
	}
	if s, _ := v.Status(context.Background(), a); s != StatusNeedsReauth {
		t.Errorf("status %q, want needs_reauth", s)
	}
	if _, err := v.TokenSource(a).Token(); !errors.Is(err, ErrNeedsReauth) {
		t.Errorf("Token = %v, want ErrNeedsReauth", err)
	}
	// Marking again is a no-op, not a second count.
	if err := v.MarkNeedsReauth(context.Background(), a, "again"); err != nil {
		t.Fatal(err)
	}
	if n := f.reauth.Load(); n != 1 {
		t.Errorf("OnNeedsReauth called %d times, want 1", n)
	}

	if _, err := f.pool.Exec(context.Background(), `UPDATE connections SET status = 'revoked' WHERE id = $1`, b); err != nil {
		t.Fatal(err)
	}
	if _, err := v.TokenSource(b).Token(); !errors.Is(err, ErrNeedsReauth) {
		t.Errorf("Token on revoked = %v, want ErrNeedsReauth", err)
	}
	if err := v.MarkNeedsReauth(context.Background(), b, "x"); err != nil {
		t.Fatal(err)
	}
	if s, _ := v.Status(context.Background(), b); s != StatusRevoked {
		t.Errorf("MarkNeedsReauth changed revoked to %q", s)
	}
	if n := f.tokens.calls.Load(); n != 0 {
		t.Errorf("%d token endpoint calls", n)
	}
}

func TestPutWithoutRefreshTokenKeepsStoredOne(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Now(), rotating)
	v := f.vault(t)
	ws := f.workspace(t)
	id := put(t, v, ws, "google", "rep@northwind.test", &oauth2.Token{AccessToken: "access-0", RefreshToken: "refresh-first", Expiry: f.clock.Now().Add(time.Hour)})
	put(t, v, ws, "google", "rep@northwind.test", &oauth2.Token{AccessToken: "access-again", Expiry: f.clock.Now().Add(10 * time.Second)})
	token(t, v, id)
	if diff := cmp.Diff([]string{"refresh-first"}, f.tokens.refreshTokensSeen()); diff != "" {
		t.Errorf("refresh tokens sent (-want +got):\n%s", diff)
	}
}

func TestRefreshExpiring(t *testing.T) {
	t.Parallel()
	// A clock in the past keeps the other tests' rows out of the sweep.
	f := newFixture(t, time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC), rotating)
	v := f.vault(t)
	ws := f.workspace(t)
	now := f.clock.Now()
	mk := func(account string, exp time.Time) string {
		return put(t, v, ws, "google", account, &oauth2.Token{AccessToken: "access-0", RefreshToken: "refresh-" + account, Expiry: exp})
	}
	mk("expired", now.Add(-time.Minute))
	mk("soon", now.Add(59*time.Second))   // inside every window
	mk("later", now.Add(181*time.Second)) // outside every window
	parked := mk("parked", now.Add(10*time.Second))
	if err := v.MarkNeedsReauth(context.Background(), parked, "test"); err != nil {
		t.Fatal(err)
	}
	// One right at the edge of its own window, one just outside it: Put
	// again (re-authorisation) once the id, hence the window, is known.
	edgeIn := mk("edge-in", now.Add(time.Hour))
	mk("edge-in", now.Add(refreshWindow(edgeIn)))
	edgeOut := mk("edge-out", now.Add(time.Hour))
	mk("edge-out", now.Add(refreshWindow(edgeOut)+time.Second))

	n, err := v.RefreshExpiring(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("refreshed %d, want 3 (expired, soon, edge-in)", n)
	}
	want := map[string]bool{"refresh-expired": true, "refresh-soon": true, "refresh-edge-in": true}
	seen := f.tokens.refreshTokensSeen()
	for _, rt := range seen {
		if !want[rt] {
			t.Errorf("refreshed %s", rt)
		}
		delete(want, rt)
	}
	if len(want) > 0 {
		t.Errorf("not refreshed: %v", want)
	}
	// A second run right away finds nothing due.
	if n, err := v.RefreshExpiring(context.Background()); err != nil || n != 0 {
		t.Errorf("second run = %d, %v; want 0", n, err)
	}
}

func TestRefreshWindowJitter(t *testing.T) {
	t.Parallel()
	distinct := map[time.Duration]bool{}
	for range 500 {
		id, err := newUUID()
		if err != nil {
			t.Fatal(err)
		}
		w := refreshWindow(id)
		if w < 60*time.Second || w > 180*time.Second {
			t.Fatalf("window %v of %s outside 60–180 s", w, id)
		}
		if w != refreshWindow(id) {
			t.Fatal("window not stable")
		}
		distinct[w] = true
	}
	if len(distinct) < 50 {
		t.Errorf("only %d distinct windows over 500 connections", len(distinct))
	}
}

func TestConcurrentPutSameAccount(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Now(), rotating)
	v := f.vault(t)
	ws := f.workspace(t)
	var wg sync.WaitGroup
	ids := make([]string, 10)
	for i := range 10 {
		wg.Go(func() {
			id, err := v.Put(context.Background(), ws, "hubspot", "4711",
				&oauth2.Token{AccessToken: fmt.Sprintf("access-%d", i), RefreshToken: "refresh-x", Expiry: f.clock.Now().Add(time.Hour)})
			if err != nil {
				t.Errorf("Put %d: %v", i, err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("concurrent Puts made different connections: %v", ids)
		}
	}
	token(t, v, ids[0]) // whichever won, the row opens under its own id
}

func TestSealOpen(t *testing.T) {
	k1 := Key{ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)}
	k2 := Key{ID: "k2", Secret: bytes.Repeat([]byte{2}, 32)}
	old, err := New(Config{Pool: testenv.DB(t), Keys: []Key{k1}})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := old.Seal("channel:1", []byte("signing key"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("signing key")) {
		t.Fatal("sealed value holds the plaintext")
	}
	// After a rotation the old key still opens it.
	rotated, _ := New(Config{Pool: testenv.DB(t), Keys: []Key{k2, k1}})
	if got, err := rotated.Open("channel:1", sealed); err != nil || string(got) != "signing key" {
		t.Fatalf("open: %q, %v", got, err)
	}
	if _, err := rotated.Open("channel:2", sealed); err == nil {
		t.Error("a sealed value opened under another use")
	}
	only2, _ := New(Config{Pool: testenv.DB(t), Keys: []Key{k2}})
	if _, err := only2.Open("channel:1", sealed); err == nil || !strings.Contains(err.Error(), `"k1"`) {
		t.Errorf("open without its key: %v, want one naming the key", err)
	}
	for _, bad := range [][]byte{nil, {5}, sealed[:len(sealed)-1]} {
		if _, err := rotated.Open("channel:1", bad); err == nil {
			t.Errorf("opened a damaged value %x", bad)
		}
	}
}
