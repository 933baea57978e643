package graph

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
)

// AuthCode issues an authorization code for a mailbox, as the consent
// screen would; exchange it at TokenURL.
func (s *Server) AuthCode(address string) string {
	code := "M.C5" + randomToken(16)
	s.mu.Lock()
	s.codes[code] = strings.ToLower(address)
	s.mu.Unlock()
	return code
}

// RevokeGrant revokes a mailbox's refresh tokens (consent withdrawn,
// password reset): refreshing answers invalid_grant from now on.
func (s *Server) RevokeGrant(address string) {
	key := strings.ToLower(address)
	s.mu.Lock()
	for tok, a := range s.refresh {
		if a == key {
			delete(s.refresh, tok)
		}
	}
	s.mu.Unlock()
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.calls[EndpointToken]++
	s.mu.Unlock()
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'grant_type'.")
		return
	}
	if r.PostForm.Get("client_id") == "" {
		tokenError(w, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'client_id'.")
		return
	}
	var addr string
	s.mu.Lock()
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		addr = s.codes[r.PostForm.Get("code")]
		delete(s.codes, r.PostForm.Get("code")) // single use
	case "refresh_token":
		old := r.PostForm.Get("refresh_token")
		addr = s.refresh[old]
		delete(s.refresh, old) // rotation: the old one is spent
	default:
		s.mu.Unlock()
		tokenError(w, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.")
		return
	}
	mb := s.mailboxes[addr]
	if addr == "" || mb == nil {
		s.mu.Unlock()
		tokenError(w, "invalid_grant", "AADSTS70000: The provided value for the 'code' or 'refresh_token' parameter is not valid.")
		return
	}
	access := "eyJ0eXAiOiJKV1Qi." + randomToken(24)
	refresh := "0.AXoA" + randomToken(32)
	s.access[access] = addr
	s.refresh[refresh] = addr
	s.mu.Unlock()

	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	idToken := enc(map[string]any{"typ": "JWT", "alg": "RS256", "kid": "fake"}) + "." +
		enc(map[string]any{"aud": r.PostForm.Get("client_id"), "iss": "https://login.microsoftonline.com/84bd8158-6d4d-4958-8b9f-9d6445542f95/v2.0",
			"preferred_username": mb.address, "email": mb.address, "name": mb.address, "oid": mb.userID,
			"tid": "84bd8158-6d4d-4958-8b9f-9d6445542f95", "ver": "2.0"}) + ".c2lnbmF0dXJl"
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "scope": "https://graph.microsoft.com/Calendars.ReadWrite https://graph.microsoft.com/User.Read",
		"expires_in": 3599, "ext_expires_in": 3599, "access_token": access, "refresh_token": refresh, "id_token": idToken,
	})
}

func tokenError(w http.ResponseWriter, code, desc string) {
	writeJSON(w, http.StatusBadRequest, map[string]any{
		"error": code, "error_description": desc, "error_codes": []int{70000},
		"timestamp": "2026-03-20 09:00:00Z", "trace_id": newGUID(), "correlation_id": newGUID(),
	})
}
