package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// connectLinkTTL is how long a connect link may wait before its flow
// starts.
const connectLinkTTL = 72 * time.Hour

// CreateConnectLink records a connect link for a workspace and provider.
// The HTTP surface signs its id into the URL it hands out.
func (p *Pipeline) CreateConnectLink(ctx context.Context, ws string, in ConnectLinkInput) (ConnectLink, error) {
	if _, err := p.workspace(ctx, ws); err != nil {
		return ConnectLink{}, err
	}
	if !knownProvider(in.Provider) {
		return ConnectLink{}, fmt.Errorf("provider %q: want google, microsoft, calendly or hubspot: %w", in.Provider, ErrInvalid)
	}
	l := ConnectLink{WorkspaceID: ws, Provider: in.Provider, Account: in.Account,
		AllowExternalAccount: in.AllowExternalAccount, Replace: in.Replace, ExpiresAt: p.now().Add(connectLinkTTL).Truncate(time.Second)}
	err := p.db.QueryRow(ctx, `INSERT INTO connect_links (workspace_id, provider, account, allow_external, replace_crm, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, ws, l.Provider, l.Account, l.AllowExternalAccount, l.Replace, l.ExpiresAt).Scan(&l.ID)
	if err != nil {
		return ConnectLink{}, fmt.Errorf("record connect link: %w", err)
	}
	return l, nil
}

// UseConnectLink marks a connect link used and returns it: a link starts
// one flow, before it expires.
func (p *Pipeline) UseConnectLink(ctx context.Context, id string) (ConnectLink, error) {
	l := ConnectLink{ID: id}
	err := p.db.QueryRow(ctx, `UPDATE connect_links SET used_at = $2 WHERE id::text = $1 AND used_at IS NULL AND expires_at > $2
		RETURNING workspace_id, provider, account, allow_external, replace_crm, expires_at`, id, p.now()).
		Scan(&l.WorkspaceID, &l.Provider, &l.Account, &l.AllowExternalAccount, &l.Replace, &l.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, fmt.Errorf("this connect link was used already or has expired; ask your admin for a new one: %w", ErrForbidden)
	}
	if err != nil {
		return l, fmt.Errorf("use connect link: %w", err)
	}
	return l, nil
}

func knownProvider(name string) bool {
	switch name {
	case "google", "microsoft", "calendly", "hubspot":
		return true
	}
	return false
}
