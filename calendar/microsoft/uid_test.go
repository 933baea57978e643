package microsoft

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// meetingKey is the pipeline's meeting key: sha256(workspace, iCalUID,
// original start). Copied here so the test states what must agree.
func meetingKey(ws, uid string, orig time.Time) string {
	h := sha256.New()
	h.Write([]byte(ws + "\x00" + uid + "\x00"))
	if !orig.IsZero() {
		h.Write([]byte(orig.UTC().Format(time.RFC3339)))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func b64hex(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToUpper(hex.EncodeToString(b))
}

// TestICalendarUID decodes global object ids the way Exchange turns them
// into iCalendar UIDs, with MS-ASEMAIL 3.1.4.7's two worked examples.
func TestICalendarUID(t *testing.T) {
	// Example 1: an Outlook id with instance date 2004-09-16 (07D4 09 10):
	// the UID is the hex with those bytes cleared.
	outlook := b64hex(t, "BAAAAIIA4AB0xbcQGoLgCAfUCRDgQMnBJoXEAQAAAAAAAAAAEAAAAAvw7UtuTulOnjnjhns3jvM=")
	outlookUID := "040000008200E00074C5B7101A82E00800000000E040C9C12685C4010000000000000000100000000BF0ED4B6E4EE94E9E39E3867B378EF3"
	// Example 2: an id carrying a third-party UID after vCal-Uid.
	vcal := b64hex(t, "BAAAAIIA4AB0xbcQGoLgCAAAAAAAAAAAAAAAAAAAAAAAAAAAMwAAAHZDYWwtVWlkAQAAAHs4MTQxMkQzQy0yQTI0LTRFOUQtQjIwRS0xMUY3QkJFOTI3OTl9AA==")
	// A Google invitation's occurrence on 2026-04-01: date bytes 07EA 04 01.
	google := "040000008200E00074C5B7101A82E00807EA04010000000000000000000000000000000020000000" +
		strings.ToUpper(hex.EncodeToString(append(append([]byte("vCal-Uid"), 1, 0, 0, 0), []byte("7kq9d3h2lm0abc@google.com\x00")...)))
	// fix the size field (little-endian) of the Google id: 12 + 26 bytes.
	google = google[:72] + "26000000" + google[80:]

	tests := []struct {
		name, in, want string
	}{
		{"outlook id, instance date cleared", outlook, outlookUID},
		{"outlook id in lower case", strings.ToLower(outlook), outlookUID},
		{"series id is its own UID", outlookUID, outlookUID},
		{"vCal-Uid embedded UID", vcal, "{81412D3C-2A24-4E9D-B20E-11F7BBE92799}"},
		{"Google UID in an occurrence", google, "7kq9d3h2lm0abc@google.com"},
		{"not a global object id", "7kq9d3h2lm0abc@google.com", "7kq9d3h2lm0abc@google.com"},
		{"short hex", "040000008200E00074C5B7101A82E008", "040000008200E00074C5B7101A82E008"},
		{"bad size keeps the hex", outlookUID[:72] + "FF000000" + outlookUID[80:], outlookUID[:72] + "FF000000" + outlookUID[80:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ICalendarUID(tt.in); got != tt.want {
				t.Fatalf("ICalendarUID:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestMeetingKeyAcrossProviders: the Microsoft copy of an invitation gives
// the meeting key Google gives its copy, in both directions.
func TestMeetingKeyAcrossProviders(t *testing.T) {
	orig := time.Date(2026, 4, 1, 13, 0, 0, 0, time.UTC)
	moved := orig.Add(26 * time.Hour)
	googleOcc := "040000008200E00074C5B7101A82E00807EA04010000000000000000000000000000000026000000" +
		strings.ToUpper(hex.EncodeToString(append(append([]byte("vCal-Uid"), 1, 0, 0, 0), []byte("7kq9d3h2lm0abc@google.com\x00")...)))
	googleSeries := googleOcc[:32] + "00000000" + googleOcc[40:]
	exchSeries := "040000008200E00074C5B7101A82E00800000000E040C9C12685C4010000000000000000100000000BF0ED4B6E4EE94E9E39E3867B378EF3"
	exchOcc := exchSeries[:32] + "07EA0401" + exchSeries[40:]

	tests := []struct {
		name string
		// Graph's view of the copy.
		ev event
		// What Google reports for its copy of the same invitation.
		googleUID  string
		googleOrig time.Time
	}{
		{
			name:      "Google-originated single event",
			ev:        event{ID: "m1", Type: "singleInstance", ICalUID: googleSeries, UID: googleSeries},
			googleUID: "7kq9d3h2lm0abc@google.com",
		},
		{
			name:      "Google-originated occurrence (uid absent, iCalUId dated)",
			ev:        event{ID: "m2", Type: "occurrence", SeriesMasterID: "master", ICalUID: googleOcc},
			googleUID: "7kq9d3h2lm0abc@google.com", googleOrig: orig,
		},
		{
			name: "Google-originated moved exception",
			ev: event{ID: "m3", Type: "exception", SeriesMasterID: "master", ICalUID: googleOcc, UID: googleSeries,
				OriginalStart: "2026-04-01T13:00:00Z"},
			googleUID: "7kq9d3h2lm0abc@google.com", googleOrig: orig,
		},
		{
			name:      "Exchange-originated single event: Google's UID is the hex id",
			ev:        event{ID: "m4", Type: "singleInstance", ICalUID: exchSeries, UID: exchSeries},
			googleUID: exchSeries,
		},
		{
			name:      "Exchange-originated occurrence, lower-case hex",
			ev:        event{ID: "m5", Type: "occurrence", SeriesMasterID: "master", ICalUID: strings.ToLower(exchOcc)},
			googleUID: exchSeries, googleOrig: orig,
		},
		{
			name: "Exchange-originated moved exception",
			ev: event{ID: "m6", Type: "exception", SeriesMasterID: "master", ICalUID: exchOcc, UID: exchSeries,
				OriginalStart: "2026-04-01T13:00:00.0000000Z"},
			googleUID: exchSeries, googleOrig: orig,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := tt.ev
			start := orig
			if ev.Type == "exception" {
				start = moved
			}
			ev.Start = &dateTimeTZ{DateTime: start.Format(graphLayout), TimeZone: "UTC"}
			ev.End = &dateTimeTZ{DateTime: start.Add(time.Hour).Format(graphLayout), TimeZone: "UTC"}
			var master *event
			if ev.Type == "occurrence" {
				// The master carries the series' uid; the occurrence nothing.
				uid := googleSeries
				if strings.Contains(strings.ToUpper(ev.ICalUID), strings.ToUpper(exchSeries[40:])) {
					uid = exchSeries
				}
				master = &event{ID: "master", Type: "seriesMaster", UID: uid, ICalUID: uid}
			}
			got, err := normalize(&ev, master, "")
			if err != nil {
				t.Fatal(err)
			}
			if got.ICalUID != tt.googleUID || !got.OriginalStart.Equal(tt.googleOrig) {
				t.Fatalf("identity (%q, %v), Google's (%q, %v)", got.ICalUID, got.OriginalStart, tt.googleUID, tt.googleOrig)
			}
			if meetingKey("ws1", got.ICalUID, got.OriginalStart) != meetingKey("ws1", tt.googleUID, tt.googleOrig) {
				t.Fatal("meeting keys differ")
			}
		})
	}
}
