package microsoft

// Graph's wire shapes, only the fields Rapport reads.

type dateTimeTZ struct {
	DateTime string `json:"dateTime"`
	TimeZone string `json:"timeZone"`
}

type emailAddress struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

type recipient struct {
	EmailAddress emailAddress `json:"emailAddress"`
}

type attendee struct {
	Type         string       `json:"type"`
	EmailAddress emailAddress `json:"emailAddress"`
	Status       *struct {
		Response string `json:"response"`
	} `json:"status"`
}

type extendedProperty struct {
	ID    string `json:"id"`
	Value string `json:"value"`
}

// event is a Graph event as calendarView delta and GET /me/events/{id}
// return it. Occurrences in a delta answer may carry only id, type,
// seriesMasterId, start and end: their content is the series master's.
type event struct {
	ETag    string `json:"@odata.etag"`
	Removed *struct {
		Reason string `json:"reason"`
	} `json:"@removed"`
	ID           string `json:"id"`
	ICalUID      string `json:"iCalUId"`
	UID          string `json:"uid"`
	ChangeKey    string `json:"changeKey"`
	LastModified string `json:"lastModifiedDateTime"`
	Subject      string `json:"subject"`
	Body         *struct {
		ContentType string `json:"contentType"`
		Content     string `json:"content"`
	} `json:"body"`
	Start                 *dateTimeTZ `json:"start"`
	End                   *dateTimeTZ `json:"end"`
	OriginalStart         string      `json:"originalStart"`
	OriginalStartTimeZone string      `json:"originalStartTimeZone"`
	IsAllDay              bool        `json:"isAllDay"`
	IsCancelled           bool        `json:"isCancelled"`
	IsOrganizer           bool        `json:"isOrganizer"`
	Type                  string      `json:"type"`
	SeriesMasterID        string      `json:"seriesMasterId"`
	Sensitivity           string      `json:"sensitivity"`
	ShowAs                string      `json:"showAs"`
	Location              *struct {
		DisplayName string `json:"displayName"`
	} `json:"location"`
	Organizer      *recipient `json:"organizer"`
	Attendees      []attendee `json:"attendees"`
	ResponseStatus *struct {
		Response string `json:"response"`
	} `json:"responseStatus"`
	OnlineMeetingURL string `json:"onlineMeetingUrl"`
	OnlineMeeting    *struct {
		JoinURL string `json:"joinUrl"`
	} `json:"onlineMeeting"`
	ExtendedProperties []extendedProperty `json:"singleValueExtendedProperties"`
}

// deltaPage is one page of a delta round.
type deltaPage struct {
	Value     []event `json:"value"`
	NextLink  string  `json:"@odata.nextLink"`
	DeltaLink string  `json:"@odata.deltaLink"`
}

// subscription is a Graph subscription, sent and received.
type subscription struct {
	ID                       string `json:"id,omitempty"`
	ChangeType               string `json:"changeType,omitempty"`
	NotificationURL          string `json:"notificationUrl,omitempty"`
	LifecycleNotificationURL string `json:"lifecycleNotificationUrl,omitempty"`
	Resource                 string `json:"resource,omitempty"`
	ExpirationDateTime       string `json:"expirationDateTime,omitempty"`
	ClientState              string `json:"clientState,omitempty"`
}
