package pipeline

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"golang.org/x/oauth2"

	"github.com/rapportsync/rapport/calendar"
	"github.com/rapportsync/rapport/crm"
	"github.com/rapportsync/rapport/internal/provider"
	"github.com/rapportsync/rapport/matching"
	"github.com/rapportsync/rapport/migrations"
	"github.com/rapportsync/rapport/pipeline/ledger"
	"github.com/rapportsync/rapport/pipeline/plan"
)

// This file is the admin API's side of the pipeline: workspaces,
// connections, status, meetings, dead letters, reconciliation.

// notFound translates the ledger's not-found into the API's.
func notFound(err error) error {
	if errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("%s: %w", strings.TrimSuffix(err.Error(), ": "+ledger.ErrNotFound.Error()), ErrNotFound)
	}
	return err
}

// Bounds of a workspace.
const (
	// MaxWorkspaceName is the longest workspace name, in characters.
	MaxWorkspaceName = 200
	// MaxInternalDomains is the most internal domains a workspace has.
	MaxInternalDomains = 50
)

// CreateWorkspace creates a workspace with its internal domains: at most
// MaxInternalDomains, none of them free mail.
func (p *Pipeline) CreateWorkspace(ctx context.Context, name string, internal []string) (Workspace, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return Workspace{}, fmt.Errorf("name is required: %w", ErrInvalid)
	case utf8.RuneCountInString(name) > MaxWorkspaceName || !printable(name):
		return Workspace{}, fmt.Errorf("name: want printable text of at most %d characters: %w", MaxWorkspaceName, ErrInvalid)
	case len(internal) > MaxInternalDomains:
		return Workspace{}, fmt.Errorf("internal_domains: %d domains, at most %d: %w", len(internal), MaxInternalDomains, ErrInvalid)
	}
	var domains []string
	freeMail := p.rules().FreeMail()
	for _, d := range internal {
		n, err := matching.NormalizeDomain(d)
		if err != nil {
			return Workspace{}, fmt.Errorf("internal domain %q: %v: %w", d, err, ErrInvalid)
		}
		if freeMail.Contains(n) {
			// Every gmail.com attendee would count as a colleague, and any
			// gmail.com account could connect its calendar.
			return Workspace{}, fmt.Errorf("internal domain %q is a free-mail domain: its addresses belong to anyone: %w", n, ErrInvalid)
		}
		if !slices.Contains(domains, n) {
			domains = append(domains, n)
		}
	}
	if len(domains) == 0 {
		return Workspace{}, fmt.Errorf("at least one internal domain is required: %w", ErrInvalid)
	}
	return p.ledger.CreateWorkspace(ctx, name, domains)
}

func (p *Pipeline) workspace(ctx context.Context, id string) (Workspace, error) {
	w, err := p.ledger.Workspace(ctx, id)
	return w, notFound(err)
}

// WorkspaceStatus returns a workspace with its connections, calendars and
// company index.
func (p *Pipeline) WorkspaceStatus(ctx context.Context, id string) (WorkspaceStatus, error) {
	w, err := p.workspace(ctx, id)
	if err != nil {
		return WorkspaceStatus{}, err
	}
	st := WorkspaceStatus{Workspace: w}
	if st.Connections, err = p.ledger.Connections(ctx, w.ID); err != nil {
		return st, err
	}
	if st.Calendars, err = p.ledger.Calendars(ctx, w.ID); err != nil {
		return st, err
	}
	st.Index, err = p.ledger.IndexStatus(ctx, w.ID)
	return st, err
}

// Calendars lists a workspace's calendars with their sync status.
func (p *Pipeline) Calendars(ctx context.Context, ws string) ([]CalendarStatus, error) {
	if _, err := p.workspace(ctx, ws); err != nil {
		return nil, err
	}
	return p.ledger.Calendars(ctx, ws)
}

// AddConnection imports credentials. A calendar connection registers its
// calendars, opens a push channel for each and starts the initial sync; a
// CRM connection prepares the portal and loads the company index.
// Connecting an account again re-authorises it and resumes its parked work.
func (p *Pipeline) AddConnection(ctx context.Context, ws string, in ConnectionInput) (Connection, error) {
	if _, err := p.workspace(ctx, ws); err != nil {
		return Connection{}, err
	}
	if in.AccessToken == "" && in.RefreshToken == "" {
		return Connection{}, fmt.Errorf("access_token or refresh_token is required: %w", ErrInvalid)
	}
	tok := &oauth2.Token{AccessToken: in.AccessToken, RefreshToken: in.RefreshToken, TokenType: "Bearer", Expiry: in.ExpiresAt}
	if _, ok := p.cfg.Providers.Calendar(in.Provider); ok {
		return p.addCalendars(ctx, ws, in, tok)
	}
	if _, ok := p.cfg.Providers.CRM(in.Provider); ok {
		return p.addCRM(ctx, ws, in, tok)
	}
	return Connection{}, fmt.Errorf("provider %q: want one of %s: %w", in.Provider, strings.Join(p.cfg.Providers.Names(), ", "), ErrInvalid)
}

func (p *Pipeline) addCalendars(ctx context.Context, ws string, in ConnectionInput, tok *oauth2.Token) (Connection, error) {
	prov, _ := p.cfg.Providers.Calendar(in.Provider)
	account, cals := in.AccountEmail, in.CalendarIDs
	if r, ok := prov.(calendar.AccountResolver); ok {
		// The provider tells the account and its calendars from the token.
		var err error
		if account, cals, err = r.ResolveAccount(ctx, oauth2.StaticTokenSource(tok), in.Scope); err != nil {
			return Connection{}, providerRefused(in.Provider, err)
		}
	}
	addr, err := matching.ParseAddress(account)
	if err != nil {
		return Connection{}, fmt.Errorf("account_email: %v: %w", err, ErrInvalid)
	}
	if err := p.checkCalendarAccount(ctx, ws, addr, in); err != nil {
		return Connection{}, err
	}
	if cals, err = calendarIDs(cals); err != nil {
		return Connection{}, err
	}
	if pr, ok := prov.(calendar.Prober); ok && len(cals) > 0 {
		// One cheap request: a refused token or an unreachable provider is
		// said now, with nothing stored.
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := pr.Probe(pctx, calendar.Conn{ID: "import", Account: addr.Email, Tokens: oauth2.StaticTokenSource(tok)}, cals[0])
		cancel()
		if err != nil {
			return Connection{}, providerRefused(in.Provider, err)
		}
	}
	// The connection and all its calendars, or nothing; the channels and
	// the initial syncs follow in the background (connection:setup).
	var ids []string
	connID, err := p.cfg.Vault.PutWith(ctx, ws, in.Provider, addr.Email, tok, func(ctx context.Context, tx *ledger.Tx, connID string) error {
		var err error
		ids, err = tx.RegisterCalendars(ctx, ws, connID, cals)
		return err
	})
	if err != nil {
		return Connection{}, fmt.Errorf("store credentials: %w", err)
	}
	p.forget(connID)
	if err := p.enqueueSetup(ctx, ws, connID); err != nil {
		// Stored: the hourly renewal opens the channels and the sync
		// schedule syncs the calendars.
		p.log.WarnContext(ctx, "queue connection setup", slog.String("connection_id", connID), slog.String("error", scrub(err.Error())))
	}
	return Connection{ID: connID, Provider: in.Provider, Account: addr.Email, Status: string(plan.ConnActive), Calendars: ids, Setup: "queued"}, nil
}

// probeTimeout bounds the check of a calendar import's token.
const probeTimeout = 10 * time.Second

// providerRefused turns a provider's answer to an import, before anything
// is stored, into the caller's error: a refusal says what the provider
// said, an unreachable provider says so.
func providerRefused(name string, err error) error {
	msg := scrub(err.Error())
	switch provider.ClassOf(err) {
	case provider.Auth:
		return fmt.Errorf("%s refused the credentials (%s); obtain new ones and import again: %w", name, msg, ErrInvalid)
	case provider.Permanent, provider.NotFound:
		return fmt.Errorf("%s refused the connection: %s: %w", name, msg, ErrInvalid)
	}
	return fmt.Errorf("could not reach %s (%s); nothing was stored, import again: %w", name, msg, ErrUnavailable)
}

// checkCalendarAccount refuses a calendar account other than the one a
// connect link was issued for, and one outside the workspace's internal
// domains unless the admin allowed it: a stranger's calendar must not feed
// a workspace's CRM.
func (p *Pipeline) checkCalendarAccount(ctx context.Context, ws string, addr matching.Address, in ConnectionInput) error {
	if in.ExpectAccount != "" && !strings.EqualFold(in.ExpectAccount, addr.Email) {
		return fmt.Errorf("this connect link is for %s, not for the account that signed in: %w", in.ExpectAccount, ErrForbidden)
	}
	if in.AllowExternalAccount {
		return nil
	}
	w, err := p.workspace(ctx, ws)
	if err != nil {
		return err
	}
	if !addr.Under(w.InternalDomains) {
		return fmt.Errorf("the account's domain %s is not one of the workspace's internal domains (%s); an admin may allow it with \"allow_external_account\": %w",
			addr.Host, strings.Join(w.InternalDomains, ", "), ErrForbidden)
	}
	return nil
}

func (p *Pipeline) addCRM(ctx context.Context, ws string, in ConnectionInput, tok *oauth2.Token) (Connection, error) {
	sink, err := p.openSink(ctx, in.Provider, crm.Conn{Tokens: oauth2.StaticTokenSource(tok), Limiter: p.cfg.Limiter})
	if err != nil {
		return Connection{}, err
	}
	portal, err := sink.Prepare(ctx)
	p.countCRM(in.Provider, "portal.prepare", err)
	if err != nil {
		switch provider.ClassOf(err) {
		case provider.RateLimited:
			return Connection{}, fmt.Errorf("%s is rate limiting this app (%s); nothing was stored, import again in a minute: %w", in.Provider, scrub(err.Error()), ErrUnavailable)
		case provider.Transient:
			return Connection{}, fmt.Errorf("could not reach %s (%s); nothing was stored, import again: %w", in.Provider, scrub(err.Error()), ErrUnavailable)
		}
		return Connection{}, providerRefused(in.Provider, err)
	}
	if in.ExpectAccount != "" && in.ExpectAccount != portal.ID {
		return Connection{}, fmt.Errorf("this connect link is for portal %s, not portal %s: %w", in.ExpectAccount, portal.ID, ErrForbidden)
	}
	// A workspace writes to one CRM portal. Another portal replaces it only
	// when the admin says so.
	current, err := p.ledger.OtherCRM(ctx, ws, portal.ID)
	if err != nil {
		return Connection{}, err
	}
	if current.ID != "" && !in.Replace {
		return Connection{}, fmt.Errorf("workspace %s writes to %s portal %s; connecting portal %s would replace it: an admin must ask for that explicitly (\"replace\": true): %w",
			ws, current.Provider, current.Account, portal.ID, ErrConflict)
	}
	connID, err := p.cfg.Vault.Put(ctx, ws, in.Provider, portal.ID, tok)
	if err != nil {
		return Connection{}, fmt.Errorf("store credentials: %w", err)
	}
	p.forget(connID)
	if current.ID != "" {
		reason := "replaced by " + in.Provider + " portal " + portal.ID + " at " + p.now().UTC().Format(time.RFC3339)
		if err := p.ledger.RetireCRM(ctx, ws, connID, reason, p.now()); err != nil {
			return Connection{}, err
		}
		p.forget(current.ID)
		p.log.WarnContext(ctx, "CRM connection replaced by the admin", slog.String("workspace_id", ws),
			slog.String("old_connection_id", current.ID), slog.String("old_portal", current.Account),
			slog.String("connection_id", connID), slog.String("portal", portal.ID))
	}
	if err := p.ledger.SetCRMUniqueKey(ctx, connID, portal.UniqueKey); err != nil {
		return Connection{}, err
	}
	if err := p.enqueue(ctx, TaskIndex, indexPayload{WorkspaceID: ws, Full: true}, asynq.Queue(QueueMaintenance),
		asynq.TaskID("index-full:"+ws+":"+bucket(p.now(), time.Minute))); err != nil {
		return Connection{}, err
	}
	return Connection{ID: connID, Provider: in.Provider, Account: portal.ID, Status: string(plan.ConnActive)}, p.Resume(ctx, connID)
}

// Resume re-drives the work parked while a connection needed
// re-authorisation, and syncs its calendars.
func (p *Pipeline) Resume(ctx context.Context, connID string) error {
	parked, err := p.ledger.ParkedFor(ctx, connID)
	if err != nil {
		return err
	}
	for _, d := range parked {
		if err := p.redrive(ctx, d); err != nil {
			return err
		}
		if err := p.ledger.MarkRetried(ctx, d.ID, p.now()); err != nil {
			return err
		}
	}
	if len(parked) > 0 {
		p.log.InfoContext(ctx, "resumed parked work", slog.String("connection_id", connID), slog.Int("tasks", len(parked)))
	}
	cals, err := p.ledger.SyncableCalendars(ctx, ledger.CalendarFilter{ConnectionID: connID})
	if err != nil {
		return err
	}
	for _, id := range cals {
		if err := p.markDirty(ctx, id, false, time.Time{}); err != nil {
			return err
		}
	}
	return nil
}

// redrive runs an archived task again; a sync whose task has expired from
// the archive is simply enqueued anew. A meeting parked on its own (refused
// by the CRM, or out of attempts) is released with a fresh budget and its
// event re-read: the ledger keeps no content to write it from.
func (p *Pipeline) redrive(ctx context.Context, d DeadLetter) error {
	var ref struct {
		CalendarID  string   `json:"calendar_id"`
		MeetingKey  string   `json:"meeting_key"`
		MeetingKeys []string `json:"meeting_keys"`
	}
	_ = json.Unmarshal(d.Ref, &ref)
	if ref.MeetingKey != "" {
		return p.releaseMeetings(ctx, d.WorkspaceID, []string{ref.MeetingKey})
	}
	err := p.inspector.RunTask(d.Queue, d.TaskID)
	if err == nil {
		return nil
	}
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		switch {
		case d.TaskType == TaskSync && ref.CalendarID != "":
			return p.markDirty(ctx, ref.CalendarID, false, time.Time{})
		case len(ref.MeetingKeys) > 0 && d.WorkspaceID != "":
			return p.releaseMeetings(ctx, d.WorkspaceID, ref.MeetingKeys)
		}
		var setup setupPayload
		if d.TaskType == TaskSetup && json.Unmarshal(d.Ref, &setup) == nil && setup.ConnectionID != "" {
			return p.enqueueSetup(ctx, setup.WorkspaceID, setup.ConnectionID)
		}
		return nil // the work is recomputed by the next sync or reconciliation
	}
	return fmt.Errorf("re-drive task %s: %w", d.TaskID, err)
}

// releaseMeetings makes parked meetings writable again and queues a
// re-read of one copy of each, which decides it again and queues its write.
func (p *Pipeline) releaseMeetings(ctx context.Context, ws string, keys []string) error {
	refs, err := p.ledger.ReleaseMeetings(ctx, ws, keys, p.now())
	if err != nil {
		return err
	}
	byCal := map[string][]string{}
	for _, r := range refs {
		byCal[r.CalendarID] = append(byCal[r.CalendarID], r.EventID)
	}
	for cal, ids := range byCal {
		for len(ids) > 0 {
			n := min(len(ids), fetchChunk)
			if err := p.enqueueFetchSweep(ctx, cal, ids[:n]); err != nil {
				return err
			}
			ids = ids[n:]
		}
	}
	p.log.InfoContext(ctx, "parked meetings released", slog.String("workspace_id", ws), slog.Int("meetings", len(keys)), slog.Int("copies_reread", len(refs)))
	return nil
}

// RequestSync enqueues an incremental sync of one calendar.
func (p *Pipeline) RequestSync(ctx context.Context, ws, calID string) error {
	found, err := p.ledger.CalendarInWorkspace(ctx, ws, calID)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("calendar %q in workspace %q: %w", calID, ws, ErrNotFound)
	}
	return p.markDirty(ctx, calID, false, time.Time{})
}

// CRMChanged enqueues a company index refresh for the workspaces connected
// to a CRM portal.
func (p *Pipeline) CRMChanged(ctx context.Context, portalID string) error {
	wss, err := p.ledger.CRMWorkspaces(ctx, portalID)
	if err != nil {
		return err
	}
	for _, ws := range wss {
		if err := p.enqueue(ctx, TaskIndex, indexPayload{WorkspaceID: ws}, asynq.Queue(QueueMaintenance), asynq.TaskID("index:"+ws+":"+bucket(p.now(), 10*time.Second))); err != nil {
			return err
		}
	}
	return nil
}

// Meetings lists ledger entries in id order, for stable cursors.
func (p *Pipeline) Meetings(ctx context.Context, ws, state string, pg Page) ([]MeetingEntry, string, error) {
	if _, err := p.workspace(ctx, ws); err != nil {
		return nil, "", err
	}
	after, err := decodeCursor(pg.After)
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(pg.Limit)
	out, ids, err := p.ledger.Meetings(ctx, ws, state, after, limit)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = encodeCursor(ids[limit-1])
	}
	if out == nil {
		out = []MeetingEntry{}
	}
	return out, next, nil
}

// Meeting returns one ledger entry with its decision trace and copies.
func (p *Pipeline) Meeting(ctx context.Context, ws, key string) (MeetingDetail, error) {
	d, err := p.ledger.Meeting(ctx, ws, key)
	return d, notFound(err)
}

// DeadLetters lists terminal failures, oldest first.
func (p *Pipeline) DeadLetters(ctx context.Context, pg Page) ([]DeadLetter, string, error) {
	after, err := decodeCursor(pg.After)
	if err != nil {
		return nil, "", err
	}
	limit := clampLimit(pg.Limit)
	list, err := p.ledger.DeadLetters(ctx, after, limit)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(list) > limit {
		list = list[:limit]
		next = encodeCursor(list[limit-1].ID)
	}
	if list == nil {
		list = []DeadLetter{}
	}
	return list, next, nil
}

// RetryDeadLetter re-drives a terminal failure.
func (p *Pipeline) RetryDeadLetter(ctx context.Context, id int64) error {
	d, err := p.ledger.DeadLetter(ctx, id)
	if err != nil {
		return notFound(err)
	}
	if d.RetriedAt != nil {
		return fmt.Errorf("dead letter %d was retried at %s: %w", id, d.RetriedAt.Format(time.RFC3339), ErrConflict)
	}
	var ref struct {
		ConnectionID string `json:"connection_id"`
	}
	_ = json.Unmarshal(d.Ref, &ref)
	if ref.ConnectionID != "" {
		if st, err := p.ledger.ConnStatus(ctx, ref.ConnectionID); err == nil && st != plan.ConnActive {
			return fmt.Errorf("connection %s is %s: re-authorise it first: %w", ref.ConnectionID, st, ErrConflict)
		}
	}
	if err := p.redrive(ctx, d); err != nil {
		return err
	}
	return p.ledger.MarkRetried(ctx, id, p.now())
}

// StartReconcile records a run and queues it.
func (p *Pipeline) StartReconcile(ctx context.Context, req ReconcileRequest) (string, error) {
	id, err := p.newRun(ctx, req)
	if err != nil {
		return "", err
	}
	if err := p.enqueue(ctx, TaskReconcile, reconcilePayload{RunID: id}, asynq.Queue(QueueMaintenance), asynq.TaskID("reconcile:"+id), asynq.MaxRetry(3)); err != nil {
		return "", err
	}
	return id, nil
}

// RunReconcile runs a reconciliation now and returns its report.
func (p *Pipeline) RunReconcile(ctx context.Context, req ReconcileRequest) (ReconcileReport, error) {
	id, err := p.newRun(ctx, req)
	if err != nil {
		return ReconcileReport{}, err
	}
	if err := p.rec.run(ctx, id); err != nil {
		p.log.WarnContext(ctx, "reconciliation failed", slog.String("run_id", id), slog.String("error", scrub(err.Error())))
	}
	return p.ReconcileRun(ctx, id)
}

func (p *Pipeline) newRun(ctx context.Context, req ReconcileRequest) (string, error) {
	if _, err := p.workspace(ctx, req.WorkspaceID); err != nil {
		return "", err
	}
	if req.CalendarID != "" {
		ok, err := p.ledger.CalendarInWorkspace(ctx, req.WorkspaceID, req.CalendarID)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("calendar %q in workspace %q: %w", req.CalendarID, req.WorkspaceID, ErrNotFound)
		}
	}
	return p.ledger.NewRun(ctx, ledger.Run{WorkspaceID: req.WorkspaceID, CalendarID: req.CalendarID, DryRun: req.DryRun})
}

// ReconcileRun returns a run's report.
func (p *Pipeline) ReconcileRun(ctx context.Context, id string) (ReconcileReport, error) {
	r, err := p.ledger.Report(ctx, id)
	return r, notFound(err)
}

// connectLinkTTL is how long a connect link may wait before its flow
// starts.
const connectLinkTTL = 72 * time.Hour

// CreateConnectLink records a connect link for a workspace and provider.
// The HTTP surface signs its id into the URL it hands out.
func (p *Pipeline) CreateConnectLink(ctx context.Context, ws string, in ConnectLinkInput) (ConnectLink, error) {
	if _, err := p.workspace(ctx, ws); err != nil {
		return ConnectLink{}, err
	}
	_, cal := p.cfg.Providers.Calendar(in.Provider)
	_, crmOK := p.cfg.Providers.CRM(in.Provider)
	if !cal && !crmOK {
		return ConnectLink{}, fmt.Errorf("provider %q: want one of %s: %w", in.Provider, strings.Join(p.cfg.Providers.Names(), ", "), ErrInvalid)
	}
	l := ConnectLink{WorkspaceID: ws, Provider: in.Provider, Account: in.Account,
		AllowExternalAccount: in.AllowExternalAccount, Replace: in.Replace, ExpiresAt: p.now().Add(connectLinkTTL).Truncate(time.Second)}
	if err := p.ledger.CreateConnectLink(ctx, &l); err != nil {
		return ConnectLink{}, err
	}
	return l, nil
}

// UseConnectLink marks a connect link used and returns it: a link starts
// one flow, before it expires.
func (p *Pipeline) UseConnectLink(ctx context.Context, id string) (ConnectLink, error) {
	l, err := p.ledger.UseConnectLink(ctx, id, p.now())
	if errors.Is(err, ledger.ErrConflict) {
		return l, fmt.Errorf("this connect link was used already or has expired; ask your admin for a new one: %w", ErrForbidden)
	}
	return l, err
}

// Ready checks PostgreSQL, Redis and that the schema is current.
func (p *Pipeline) Ready(ctx context.Context) error {
	if err := p.ledger.Ping(ctx); err != nil {
		return fmt.Errorf("postgresql: %w", err)
	}
	if err := p.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	pending, err := migrations.PendingPool(ctx, p.ledger.Pool())
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if pending {
		return errors.New("migrations are pending: run rapport migrate")
	}
	return nil
}

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return 50
	case n > 500:
		return 500
	}
	return n
}

func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(id, 10)))
}

func decodeCursor(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		if n, err := strconv.ParseInt(string(b), 10, 64); err == nil && n >= 0 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("bad cursor %q: %w", s, ErrInvalid)
}
