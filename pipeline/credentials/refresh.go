package credentials

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/pipeline/ledger"
)

const (
	// expiryMargin: a token expiring sooner than this is refreshed before
	// it is handed out, so a request never leaves with a dying token.
	expiryMargin = 30 * time.Second
	// The scheduled refresh renews a token when it expires within a window
	// of scheduleMin plus a per-connection share of scheduleSpread, so the
	// connections of one import do not all hit the token endpoint at once.
	// The schedule must run more often than scheduleMin.
	scheduleMin    = 60 * time.Second
	scheduleSpread = 120 * time.Second
	// refreshTimeout bounds one refresh, the token endpoint call included.
	refreshTimeout = 30 * time.Second
	// lockPrefix namespaces the advisory locks of the vault.
	lockPrefix = "rapport:credentials:"
)

// TokenSource returns a source of valid access tokens for a connection. Each
// Token call reads the connection, refreshes the token when it expires within
// 30 s, and returns ErrNeedsReauth (wrapped) without calling the token
// endpoint when the connection is needs_reauth or revoked. The returned
// tokens never carry the refresh token. Wrap it in oauth2.ReuseTokenSource to
// save the database read per request.
func (v *Vault) TokenSource(connID string) oauth2.TokenSource {
	return tokenSource{v: v, id: connID}
}

type tokenSource struct {
	v  *Vault
	id string
}

func (s tokenSource) Token() (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout+5*time.Second)
	defer cancel()
	return s.v.Token(ctx, s.id)
}

// Token returns a valid access token of a connection; see TokenSource.
func (v *Vault) Token(ctx context.Context, connID string) (*oauth2.Token, error) {
	r, err := v.load(ctx, connID)
	if err != nil {
		return nil, err
	}
	if r.Status != StatusActive {
		return nil, fmt.Errorf("connection %s is %s: %w", r.ID, r.Status, ErrNeedsReauth)
	}
	tok, err := v.keys.open(r.ID, r.KeyID, r.Ciphertext)
	if err != nil {
		return nil, err
	}
	if fresh(tok, v.clock(), expiryMargin) {
		return public(tok), nil
	}
	res, err := v.refreshShared(ctx, r.ID, expiryMargin)
	if err != nil {
		return nil, err
	}
	return public(res.tok), nil
}

// refreshResult is what one shared refresh hands to every waiter.
type refreshResult struct {
	tok       *oauth2.Token
	refreshed bool // false: another process had refreshed already
}

// refreshShared runs one refresh per connection in this process; concurrent
// callers wait for it and share its outcome. The refresh itself is detached
// from the first caller's cancellation so that its waiters are not failed by
// it; each caller still stops waiting when its own ctx ends.
func (v *Vault) refreshShared(ctx context.Context, connID string, margin time.Duration) (refreshResult, error) {
	ch := v.refreshes.DoChan(connID, func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
		defer cancel()
		return v.refresh(rctx, connID, margin)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return refreshResult{}, res.Err
		}
		return res.Val.(refreshResult), nil
	case <-ctx.Done():
		return refreshResult{}, fmt.Errorf("refresh token of connection %s: %w", connID, ctx.Err())
	}
}

// refresh renews the token of a connection unless, once it holds the
// connection's advisory lock, the stored token is valid for more than
// margin (another process refreshed it meanwhile).
func (v *Vault) refresh(ctx context.Context, connID string, margin time.Duration) (refreshResult, error) {
	if !validUUID(connID) {
		return refreshResult{}, fmt.Errorf("connection %q: %w", connID, ErrNotFound)
	}
	tx, err := v.ledger.Begin(ctx)
	if err != nil {
		return refreshResult{}, fmt.Errorf("refresh token of connection %s: %w", connID, err)
	}
	defer tx.Rollback(ctx)
	if err := tx.AdvisoryLock(ctx, lockPrefix+connID); err != nil {
		return refreshResult{}, fmt.Errorf("refresh token of connection %s: lock: %w", connID, err)
	}
	r, err := tx.LockConnection(ctx, connID)
	if errors.Is(err, ledger.ErrNotFound) {
		return refreshResult{}, fmt.Errorf("connection %s: %w", connID, ErrNotFound)
	}
	if err != nil {
		return refreshResult{}, err
	}
	if r.Status != StatusActive {
		return refreshResult{}, fmt.Errorf("connection %s is %s: %w", r.ID, r.Status, ErrNeedsReauth)
	}
	tok, err := v.keys.open(r.ID, r.KeyID, r.Ciphertext)
	if err != nil {
		return refreshResult{}, err
	}
	if fresh(tok, v.clock(), margin) {
		return refreshResult{tok: tok}, tx.Commit(ctx)
	}
	if tok.RefreshToken == "" {
		return refreshResult{}, v.grantGone(ctx, tx, r, "no_refresh_token",
			fmt.Sprintf("the %s access token expired and no refresh token is stored; re-authorise the connection", r.Provider))
	}
	oc := v.oauth[r.Provider]
	if oc == nil {
		return refreshResult{}, fmt.Errorf("refresh token of connection %s: no OAuth client configured for %s", r.ID, r.Provider)
	}

	hctx := context.WithValue(ctx, oauth2.HTTPClient, v.client)
	next, err := oc.TokenSource(hctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		if code, ok := grantRejected(err); ok {
			return refreshResult{}, v.grantGone(ctx, tx, r, code,
				fmt.Sprintf("%s rejected the refresh token (%s); re-authorise the connection", r.Provider, code))
		}
		return refreshResult{}, fmt.Errorf("refresh %s token of connection %s: %w", r.Provider, r.ID, refreshError(err))
	}
	if next.ExpiresIn > 0 {
		// Our clock, not the library's, decides expiry everywhere else.
		next.Expiry = v.clock().Add(time.Duration(next.ExpiresIn) * time.Second)
	}
	rotated := next.RefreshToken != "" && next.RefreshToken != tok.RefreshToken
	if next.RefreshToken == "" {
		next.RefreshToken = tok.RefreshToken
	}
	keyID, ct, err := v.keys.seal(r.ID, next)
	if err != nil {
		return refreshResult{}, err
	}
	if err := tx.StoreToken(ctx, r.ID, keyID, ct, expiresAt(next), false); err != nil {
		return refreshResult{}, fmt.Errorf("store refreshed token of connection %s: %w", r.ID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return refreshResult{}, fmt.Errorf("store refreshed token of connection %s: %w", r.ID, err)
	}
	v.log.DebugContext(ctx, "token refreshed", slog.String("connection_id", r.ID),
		slog.String("provider", r.Provider), slog.Bool("refresh_token_rotated", rotated))
	return refreshResult{tok: next, refreshed: true}, nil
}

// grantGone marks the connection needs_reauth inside the refresh
// transaction, commits, and returns the ErrNeedsReauth to hand out.
func (v *Vault) grantGone(ctx context.Context, tx *ledger.Tx, r ledger.Sealed, code, lastError string) error {
	marked, err := tx.MarkNeedsReauth(ctx, r.ID, lastError)
	if err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("mark connection %s needs_reauth: %w", r.ID, err)
	}
	if marked != nil {
		v.reauthNeeded(ctx, marked, code)
	}
	return fmt.Errorf("connection %s: %s refresh failed (%s): %w", r.ID, r.Provider, code, ErrNeedsReauth)
}

// grantRejected reports whether a token endpoint error means the refresh
// token is dead for good: Google's invalid_grant (RFC 6749) or HubSpot's
// BAD_REFRESH_TOKEN.
func grantRejected(err error) (code string, ok bool) {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return "", false
	}
	if re.ErrorCode == "invalid_grant" {
		return "invalid_grant", true
	}
	var body struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(re.Body, &body) == nil && body.Status == "BAD_REFRESH_TOKEN" {
		return "BAD_REFRESH_TOKEN", true
	}
	return "", false
}

// refreshError keeps the token endpoint's status and error code but drops
// its body from the error text.
func refreshError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return err
	}
	status := "no response"
	if re.Response != nil {
		status = re.Response.Status
	}
	if re.ErrorCode != "" {
		return fmt.Errorf("token endpoint answered %s: %s", status, re.ErrorCode)
	}
	return fmt.Errorf("token endpoint answered %s", status)
}

// RefreshExpiring refreshes the active tokens that expire within their
// connection's window (60–180 s, fixed per connection) and returns how many
// it refreshed. It is the credentials:refresh schedule; run it more often
// than once a minute. Connections whose grant turns out dead are marked
// needs_reauth and not reported as errors.
func (v *Vault) RefreshExpiring(ctx context.Context) (int, error) {
	now := v.clock()
	list, err := v.ledger.ExpiringTokens(ctx, now.Add(scheduleMin+scheduleSpread))
	if err != nil {
		return 0, fmt.Errorf("refresh expiring tokens: %w", err)
	}
	n := 0
	var errs []error
	for _, d := range list {
		window := refreshWindow(d.ID)
		if d.ExpiresAt.Sub(now) > window {
			continue
		}
		res, err := v.refreshShared(ctx, d.ID, window)
		switch {
		case err == nil:
			if res.refreshed {
				n++
			}
		case errors.Is(err, ErrNeedsReauth), errors.Is(err, ErrNotFound):
		case ctx.Err() != nil:
			return n, fmt.Errorf("refresh expiring tokens: %w", ctx.Err())
		default:
			v.log.WarnContext(ctx, "scheduled token refresh failed", slog.String("connection_id", d.ID),
				slog.String("error", err.Error()))
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("refresh expiring tokens: %d failed: %w", len(errs), errors.Join(errs...))
	}
	return n, nil
}

// refreshWindow is the connection's scheduled refresh window: 60–180 s,
// derived from its id so that it stays the same from run to run.
func refreshWindow(connID string) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(connID))
	return scheduleMin + time.Duration(h.Sum64()%uint64(scheduleSpread/time.Second+1))*time.Second
}

// fresh reports whether tok can be handed out: it has an access token that
// does not expire within margin (a zero expiry never expires).
func fresh(tok *oauth2.Token, now time.Time, margin time.Duration) bool {
	return tok.AccessToken != "" && (tok.Expiry.IsZero() || tok.Expiry.Sub(now) > margin)
}

// public is the part of a token that leaves the vault.
func public(tok *oauth2.Token) *oauth2.Token {
	return &oauth2.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Expiry: tok.Expiry}
}
