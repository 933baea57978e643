package hubspot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/rapportsync/rapport/crm"
)

// keyProperty is the definition of Rapport's meeting-key property.
func keyProperty(unique bool) property {
	return property{
		Name:           crm.PropKey,
		Label:          "Rapport meeting key",
		Type:           "string",
		FieldType:      "text",
		GroupName:      "meetinginformation",
		Description:    "Written by Rapport: identifies the calendar meeting this engagement was logged from.",
		HasUniqueValue: unique,
	}
}

// Prepare learns the portal (id and time zone) and ensures the meeting-key
// property exists, created with unique values where HubSpot accepts that
// for meetings. Portal.UniqueKey reports whether the property is unique,
// so that CreateMeetings may upsert.
func (c *Client) Prepare(ctx context.Context) (crm.Portal, error) {
	info, err := c.accountInfo(ctx)
	if err != nil {
		return crm.Portal{}, err
	}
	id := info.PortalID.String()
	c.portalMu.Lock()
	configured := c.portal
	if configured == "" {
		c.portal = id
	}
	c.portalMu.Unlock()
	if configured != "" && configured != id {
		return crm.Portal{}, &crm.Error{Class: crm.Permanent, Op: "account.details",
			Err: fmt.Errorf("the token belongs to HubSpot portal %s but the connection is configured for portal %s", id, configured)}
	}

	prop, err := c.getKeyProperty(ctx)
	if crm.ClassOf(err) == crm.NotFound {
		prop, err = c.createKeyProperty(ctx)
	}
	if err != nil {
		return crm.Portal{}, fmt.Errorf("prepare portal %s: %w", id, err)
	}
	return crm.Portal{ID: id, UniqueKey: prop.HasUniqueValue}, nil
}

func (c *Client) getKeyProperty(ctx context.Context) (property, error) {
	var p property
	_, err := c.send(ctx, request{op: "properties.get", method: http.MethodGet, path: pathProperties + "/" + crm.PropKey, replayable: true}, &p)
	return p, err
}

// createKeyProperty creates the property, unique if HubSpot lets meetings
// have a unique property (unconfirmed; a 400 says it does not). A 409 means
// another process created it meanwhile.
func (c *Client) createKeyProperty(ctx context.Context) (property, error) {
	create := func(unique bool) (property, error) {
		var p property
		_, err := c.send(ctx, request{op: "properties.create", method: http.MethodPost, path: pathProperties, body: keyProperty(unique)}, &p)
		return p, err
	}
	p, err := create(true)
	var ae *APIError
	if err != nil && errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return c.getKeyProperty(ctx)
	}
	if crm.ClassOf(err) != crm.Permanent {
		return p, err
	}
	c.cfg.Logger.Info("hubspot: unique meeting property refused; creating it without unique values",
		slog.String("reason", err.Error()))
	p, err = create(false)
	if err != nil && errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return c.getKeyProperty(ctx)
	}
	return p, err
}
