package microsoft_test

import (
	"encoding/base64"

	"golang.org/x/oauth2"
)

// microsoftCursor forges a cursor in this package's format around link.
func microsoftCursor(link string) string {
	return "graph1." + base64.RawURLEncoding.EncodeToString([]byte(`{"s":1774000000,"e":1777000000,"l":"`+link+`"}`))
}

func staticTokens(tok string) oauth2.TokenSource {
	return oauth2.StaticTokenSource(&oauth2.Token{AccessToken: tok})
}
