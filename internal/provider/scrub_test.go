package provider

import (
	"strings"
	"testing"
)

func TestScrub(t *testing.T) {
	for _, c := range []struct {
		in       string
		want     string
		mustNot  []string
		mustKeep []string
	}{
		{in: `Get "https://www.googleapis.com/calendar/v3/calendars/rep%40northwind.test/events?alt=json&syncToken=CPDAlvWDx70CEPDAlvWDx70CGAU%3D": dial tcp 127.0.0.1:1: connect: connection refused`,
			mustNot: []string{"rep%40", "rep@", "syncToken=CPD", "CPDAlvWDx70"}, mustKeep: []string{"northwind.test", "connection refused", "googleapis.com"}},
		{in: `events.list: permanent: googleapi: Error 404: Not Found, notFound for calendar rep@northwind.test`,
			mustNot: []string{"rep@"}, mustKeep: []string{"northwind.test", "Error 404"}},
		{in: `hubspot 400 VALIDATION_ERROR: Property values were not valid: {"email":"ann.lee+crm@acme.example"}`,
			mustNot: []string{"ann.lee"}, mustKeep: []string{"acme.example", "VALIDATION_ERROR"}},
		{in: `token endpoint: {"access_token":"ya29.a0AfH6SM","refresh_token":"1//0gabc"}`,
			mustNot: []string{"ya29", "1//0gabc"}},
		{in: `Authorization: Bearer eyJhbGciOi.payload.sig failed`, mustNot: []string{"eyJhbGciOi"}},
		{in: `GET https://graph.microsoft.com/v1.0/me/calendarView/delta?$deltatoken=R0usmci39OQxqJrxK4: 410`,
			mustNot: []string{"R0usmci39"}, mustKeep: []string{"graph.microsoft.com", "410"}},
		{in: `events.watch: googleapi: Error 500: body {"address":"https://r.example/webhooks/google","id":"c1","token":"P2UFB-8CY1F8XV74WbQA","type":"web_hook"}`,
			mustNot: []string{"P2UFB-8CY1F8XV74WbQA"}, mustKeep: []string{"web_hook", "Error 500"}},
		{in: `body {\"token\":\"escaped-secret-123\"}`, mustNot: []string{"escaped-secret-123"}},
		{in: `subscriptions.create: 400: {"changeType":"created","clientState":"s3cr3t-state-9","notificationUrl":"x"}`,
			mustNot: []string{"s3cr3t-state-9"}, mustKeep: []string{"changeType"}},
		{in: `webhook_subscriptions: 400 {"signing_key":"sk-abcdef123456","url":"x"}`, mustNot: []string{"sk-abcdef123456"}},
		{in: "plain error without secrets: 3 tokens refused", want: "plain error without secrets: 3 tokens refused"},
		{in: "plain error without secrets", want: "plain error without secrets"},
	} {
		got := Scrub(c.in)
		if c.want != "" && got != c.want {
			t.Errorf("Scrub(%q) = %q, want %q", c.in, got, c.want)
		}
		for _, s := range c.mustNot {
			if strings.Contains(got, s) {
				t.Errorf("Scrub(%q) = %q still holds %q", c.in, got, s)
			}
		}
		for _, s := range c.mustKeep {
			if !strings.Contains(got, s) {
				t.Errorf("Scrub(%q) = %q lost %q", c.in, got, s)
			}
		}
	}
}
