package credentials

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/rapportsync/rapport/pipeline/ledger"
)

// Connection statuses, as the connections table spells them.
const (
	StatusActive      = "active"
	StatusNeedsReauth = "needs_reauth"
	StatusRevoked     = "revoked"
)

var (
	// ErrNeedsReauth means the connection's grant is gone (refresh token
	// rejected, revoked, or marked by the pipeline after a 401): its work is
	// parked until someone re-authorises it through OAuth or the admin API.
	ErrNeedsReauth = errors.New("connection needs re-authorisation")
	// ErrNotFound means there is no connection with that id.
	ErrNotFound = errors.New("connection not found")
)

// Config configures a Vault.
type Config struct {
	// Pool is the database holding the connections table. Required.
	Pool *pgxpool.Pool
	// Keys are the encryption keys; the first one encrypts, any one decrypts.
	// Required.
	Keys []Key
	// OAuth holds the OAuth client of each provider ("google", "hubspot")
	// whose tokens the vault refreshes. A connection of a provider missing
	// here (or mapped to nil) can be stored but not refreshed.
	OAuth map[string]*oauth2.Config
	// Logger receives ids only, never tokens. Default: discard.
	Logger *slog.Logger
	// Clock decides when a token is about to expire. Default: time.Now.
	Clock func() time.Time
	// HTTPClient calls the token endpoints. Default: a client with a 30 s
	// timeout.
	HTTPClient *http.Client
	// OnNeedsReauth is called once each time a connection turns
	// needs_reauth (the metrics hook). Default: nothing.
	OnNeedsReauth func(connID, provider string)
}

func (c *Config) withDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.OnNeedsReauth == nil {
		c.OnNeedsReauth = func(string, string) {}
	}
}

func (c *Config) validate() error {
	if c.Pool == nil {
		return errors.New("credentials: no database pool")
	}
	return nil
}

// Vault stores OAuth tokens sealed with AES-256-GCM and hands out valid
// access tokens. It is safe for concurrent use, and several processes may
// share one database.
type Vault struct {
	ledger   *ledger.Store
	keys     *keyring
	oauth    map[string]*oauth2.Config
	log      *slog.Logger
	clock    func() time.Time
	client   *http.Client
	onReauth func(connID, provider string)
	// refreshes lets one goroutine per connection refresh; the advisory lock
	// does the same across processes.
	refreshes singleflight.Group
}

// New returns a Vault.
func New(cfg Config) (*Vault, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	kr, err := newKeyring(cfg.Keys)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	oauth := make(map[string]*oauth2.Config, len(cfg.OAuth))
	for p, oc := range cfg.OAuth {
		if oc != nil {
			oauth[p] = oc
		}
	}
	return &Vault{
		ledger:   ledger.New(cfg.Pool),
		keys:     kr,
		oauth:    oauth,
		log:      cfg.Logger,
		clock:    cfg.Clock,
		client:   cfg.HTTPClient,
		onReauth: cfg.OnNeedsReauth,
	}, nil
}

// Put stores the tokens of a provider account of a workspace and returns the
// connection id. An existing connection of the same (workspace, provider,
// account) is re-authorised: its tokens are replaced, its status set active
// and its last error cleared. When tok carries no refresh token (Google omits
// it on a repeated consent), the stored one is kept.
func (v *Vault) Put(ctx context.Context, workspaceID, provider, account string, tok *oauth2.Token) (string, error) {
	return v.PutWith(ctx, workspaceID, provider, account, tok, nil)
}

// PutWith is Put that also runs then, when set, in the transaction that
// stores the tokens, with the connection's id: what then writes (an
// import's calendars) is committed with the connection or not at all.
func (v *Vault) PutWith(ctx context.Context, workspaceID, provider, account string, tok *oauth2.Token,
	then func(ctx context.Context, tx *ledger.Tx, connID string) error) (string, error) {
	if tok == nil || (tok.AccessToken == "" && tok.RefreshToken == "") {
		return "", errors.New("put credentials: no access or refresh token")
	}
	if account == "" {
		return "", errors.New("put credentials: empty account")
	}
	// A concurrent Put of the same account may insert between our insert
	// and our select; a second round then finds its row.
	for range 3 {
		id, err := v.put(ctx, workspaceID, provider, account, tok, then)
		if !errors.Is(err, errRaced) {
			return id, err
		}
	}
	return "", fmt.Errorf("put %s credentials of workspace %s: concurrent changes, try again", provider, workspaceID)
}

var errRaced = errors.New("raced")

func (v *Vault) put(ctx context.Context, workspaceID, provider, account string, tok *oauth2.Token,
	then func(context.Context, *ledger.Tx, string) error) (string, error) {
	tx, err := v.ledger.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("put credentials: %w", err)
	}
	defer tx.Rollback(ctx)

	id, err := newUUID()
	if err != nil {
		return "", err
	}
	keyID, ct, err := v.keys.seal(id, tok)
	if err != nil {
		return "", err
	}
	inserted, err := tx.InsertConnection(ctx, ledger.NewConnection{ID: id, WorkspaceID: workspaceID, Provider: provider, Account: account,
		KeyID: keyID, Ciphertext: ct, ExpiresAt: expiresAt(tok)})
	if err != nil {
		return "", fmt.Errorf("put %s credentials of workspace %s: %w", provider, workspaceID, dbError(err))
	}
	if inserted {
		if then != nil {
			if err := then(ctx, tx, id); err != nil {
				return "", err
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return "", fmt.Errorf("put credentials: %w", err)
		}
		v.log.InfoContext(ctx, "connection stored", slog.String("connection_id", id),
			slog.String("workspace_id", workspaceID), slog.String("provider", provider))
		return id, nil
	}

	// Re-authorisation of an existing connection.
	old, err := tx.LockConnectionOf(ctx, workspaceID, provider, account)
	if errors.Is(err, ledger.ErrNotFound) {
		return "", errRaced
	}
	if err != nil {
		return "", fmt.Errorf("put %s credentials of workspace %s: %w", provider, workspaceID, err)
	}
	if tok.RefreshToken == "" {
		if prev, err := v.keys.open(old.ID, old.KeyID, old.Ciphertext); err == nil {
			t := *tok
			t.RefreshToken = prev.RefreshToken
			tok = &t
		}
	}
	keyID, ct, err = v.keys.seal(old.ID, tok)
	if err != nil {
		return "", err
	}
	if err := tx.StoreToken(ctx, old.ID, keyID, ct, expiresAt(tok), true); err != nil {
		return "", fmt.Errorf("put credentials of connection %s: %w", old.ID, err)
	}
	if then != nil {
		if err := then(ctx, tx, old.ID); err != nil {
			return "", err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("put credentials of connection %s: %w", old.ID, err)
	}
	v.log.InfoContext(ctx, "connection re-authorised", slog.String("connection_id", old.ID),
		slog.String("workspace_id", workspaceID), slog.String("provider", provider),
		slog.String("previous_status", old.Status))
	return old.ID, nil
}

// Status returns the status of a connection: active, needs_reauth or
// revoked.
func (v *Vault) Status(ctx context.Context, connID string) (string, error) {
	if !validUUID(connID) {
		return "", fmt.Errorf("connection %q: %w", connID, ErrNotFound)
	}
	st, err := v.ledger.ConnStatus(ctx, connID)
	if errors.Is(err, ledger.ErrNotFound) {
		return "", fmt.Errorf("connection %s: %w", connID, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("status of connection %s: %w", connID, err)
	}
	return string(st), nil
}

// MarkNeedsReauth parks an active connection until it is re-authorised. The
// pipeline calls it when a provider answers 401 to an API call. reason is
// stored as the connection's last error; it must not hold a token. Marking a
// connection that is not active is a no-op.
func (v *Vault) MarkNeedsReauth(ctx context.Context, connID, reason string) error {
	if !validUUID(connID) {
		return fmt.Errorf("connection %q: %w", connID, ErrNotFound)
	}
	marked, err := v.ledger.MarkNeedsReauth(ctx, connID, reason)
	if err != nil {
		return err
	}
	if marked == nil {
		if _, err := v.Status(ctx, connID); err != nil {
			return err
		}
		return nil
	}
	v.reauthNeeded(ctx, marked, "marked by pipeline")
	return nil
}

// reauthNeeded logs and counts a connection that just turned needs_reauth.
func (v *Vault) reauthNeeded(ctx context.Context, r *ledger.ConnRef, cause string) {
	v.log.WarnContext(ctx, "connection needs re-authorisation",
		slog.String("connection_id", r.ID), slog.String("workspace_id", r.WorkspaceID),
		slog.String("provider", r.Provider), slog.String("cause", cause))
	v.onReauth(r.ID, r.Provider)
}

// Rotate re-encrypts with the first key every connection sealed with another
// one and returns how many it re-encrypted. Once it returns without error,
// the other keys can be removed from RAPPORT_ENCRYPTION_KEYS. A row it
// cannot open is reported and skipped; the others are still rotated.
func (v *Vault) Rotate(ctx context.Context) (int, error) {
	ids, err := v.ledger.ConnectionsSealedWithout(ctx, v.keys.first)
	if err != nil {
		return 0, fmt.Errorf("rotate keys: %w", err)
	}
	n := 0
	var errs []error
	for _, id := range ids {
		done, err := v.rotateOne(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return n, fmt.Errorf("rotate keys: %w", ctx.Err())
			}
			errs = append(errs, err)
			continue
		}
		if done {
			n++
		}
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("rotate keys: %d of %d connections not rotated: %w", len(errs), len(ids), errors.Join(errs...))
	}
	v.log.InfoContext(ctx, "encryption keys rotated", slog.Int("connections", n), slog.String("key_id", v.keys.first))
	return n, nil
}

func (v *Vault) rotateOne(ctx context.Context, id string) (bool, error) {
	tx, err := v.ledger.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx)
	r, err := tx.LockConnection(ctx, id)
	if errors.Is(err, ledger.ErrNotFound) {
		return false, nil // deleted meanwhile
	}
	if err != nil {
		return false, err
	}
	if r.KeyID == v.keys.first {
		return false, nil
	}
	tok, err := v.keys.open(r.ID, r.KeyID, r.Ciphertext)
	if err != nil {
		return false, err
	}
	keyID, ct, err := v.keys.seal(r.ID, tok)
	if err != nil {
		return false, err
	}
	if err := tx.Reseal(ctx, r.ID, keyID, ct); err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("connection %s: %w", r.ID, err)
	}
	return true, nil
}

// load reads a connection's sealed tokens.
func (v *Vault) load(ctx context.Context, connID string) (ledger.Sealed, error) {
	if !validUUID(connID) {
		return ledger.Sealed{}, fmt.Errorf("connection %q: %w", connID, ErrNotFound)
	}
	r, err := v.ledger.SealedConnection(ctx, connID)
	if errors.Is(err, ledger.ErrNotFound) {
		return r, fmt.Errorf("connection %s: %w", connID, ErrNotFound)
	}
	return r, err
}

func expiresAt(tok *oauth2.Token) *time.Time {
	if tok.Expiry.IsZero() {
		return nil
	}
	t := tok.Expiry.UTC()
	return &t
}

// dbError turns constraint violations into the caller's mistake they are.
func dbError(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23503": // foreign_key_violation
			return fmt.Errorf("no such workspace: %w", err)
		case "23514", "22P02": // check_violation, invalid_text_representation
			return fmt.Errorf("invalid connection: %s", pe.Message)
		}
	}
	return err
}

func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("connection id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// validUUID reports whether s has the textual shape of a UUID, so a bad id
// is "not found" rather than a database error.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// Seal encrypts a secret that is not a token (a webhook signing key, a
// task's payload) with the first key; ad binds it to its use, so a sealed
// value moved elsewhere does not open there.
func (v *Vault) Seal(ad string, plain []byte) ([]byte, error) { return v.keys.sealBytes(ad, plain) }

// Open decrypts what Seal sealed under the same ad, with any configured
// key.
func (v *Vault) Open(ad string, sealed []byte) ([]byte, error) { return v.keys.openBytes(ad, sealed) }
