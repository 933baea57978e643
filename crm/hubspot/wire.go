package hubspot

import (
	"bytes"
	"encoding/json"
)

// The request and response bodies of the endpoints the client calls, in
// HubSpot's v3 object shapes and v4 association shapes.

// Association type ids (HUBSPOT_DEFINED).
const (
	assocMeetingToCompany = 188
	assocMeetingToContact = 200
	categoryDefined       = "HUBSPOT_DEFINED"
)

// flexID is an object id that HubSpot writes as a string in v3 shapes and as
// a number in v4 association shapes.
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexID(s)
		return nil
	}
	if bytes.Equal(b, []byte("null")) {
		*f = ""
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = flexID(n.String())
	return nil
}

type objectRef struct {
	ID string `json:"id"`
}

type assocType struct {
	Category string `json:"associationCategory"`
	TypeID   int    `json:"associationTypeId"`
}

type assocSpec struct {
	To    objectRef   `json:"to"`
	Types []assocType `json:"types"`
}

// createInput is one input of meetings batch/create.
type createInput struct {
	Properties   map[string]string `json:"properties"`
	Associations []assocSpec       `json:"associations,omitempty"`
	TraceID      string            `json:"objectWriteTraceId,omitempty"`
}

// updateInput is one input of batch/update (by id) and batch/upsert (by
// idProperty).
type updateInput struct {
	ID         string            `json:"id"`
	IDProperty string            `json:"idProperty,omitempty"`
	Properties map[string]string `json:"properties"`
	TraceID    string            `json:"objectWriteTraceId,omitempty"`
}

type batchInputs[T any] struct {
	Inputs []T `json:"inputs"`
}

type batchReadRequest struct {
	IDProperty string      `json:"idProperty,omitempty"`
	Inputs     []objectRef `json:"inputs"`
	Properties []string    `json:"properties"`
}

// object is a CRM record as HubSpot returns it. Unset properties come back as
// null.
type object struct {
	ID         string             `json:"id"`
	Properties map[string]*string `json:"properties"`
	CreatedAt  string             `json:"createdAt,omitempty"`
	UpdatedAt  string             `json:"updatedAt,omitempty"`
	Archived   bool               `json:"archived,omitempty"`
	TraceID    string             `json:"objectWriteTraceId,omitempty"`
	New        *bool              `json:"new,omitempty"`
}

func (o object) props() map[string]string {
	m := make(map[string]string, len(o.Properties))
	for k, v := range o.Properties {
		if v != nil {
			m[k] = *v
		}
	}
	return m
}

func (o object) prop(name string) string {
	if v := o.Properties[name]; v != nil {
		return *v
	}
	return ""
}

// batchError is one entry of a batch response's errors[].
type batchError struct {
	Status      string              `json:"status"`
	Category    string              `json:"category"`
	SubCategory json.RawMessage     `json:"subCategory,omitempty"`
	Message     string              `json:"message"`
	Context     map[string][]string `json:"context,omitempty"`
	Errors      []errorDetail       `json:"errors,omitempty"`
	ID          string              `json:"id,omitempty"`
}

type errorDetail struct {
	Message     string          `json:"message"`
	Code        string          `json:"code,omitempty"`
	In          string          `json:"in,omitempty"`
	SubCategory json.RawMessage `json:"subCategory,omitempty"`
}

// batchResponse is the answer of a batch endpoint: 200/201 with results, or
// 207 with results and errors.
type batchResponse struct {
	Status    string       `json:"status"`
	Results   []object     `json:"results"`
	Errors    []batchError `json:"errors,omitempty"`
	NumErrors int          `json:"numErrors,omitempty"`
}

type paging struct {
	Next *struct {
		After string `json:"after"`
	} `json:"next,omitempty"`
}

func (p *paging) after() string {
	if p == nil || p.Next == nil {
		return ""
	}
	return p.Next.After
}

type listResponse struct {
	Results []object `json:"results"`
	Paging  *paging  `json:"paging,omitempty"`
}

type filter struct {
	PropertyName string   `json:"propertyName"`
	Operator     string   `json:"operator"`
	Value        string   `json:"value,omitempty"`
	Values       []string `json:"values,omitempty"`
}

type filterGroup struct {
	Filters []filter `json:"filters"`
}

type searchSort struct {
	PropertyName string `json:"propertyName"`
	Direction    string `json:"direction"`
}

type searchRequest struct {
	FilterGroups []filterGroup `json:"filterGroups"`
	Sorts        []searchSort  `json:"sorts,omitempty"`
	Properties   []string      `json:"properties,omitempty"`
	Limit        int           `json:"limit"`
	After        string        `json:"after,omitempty"`
}

type searchResponse struct {
	Total   int      `json:"total"`
	Results []object `json:"results"`
	Paging  *paging  `json:"paging,omitempty"`
}

type owner struct {
	ID       string `json:"id"`
	Email    string `json:"email"`
	Archived bool   `json:"archived"`
}

type ownersResponse struct {
	Results []owner `json:"results"`
	Paging  *paging `json:"paging,omitempty"`
}

// property is a property definition (crm/properties).
type property struct {
	Name           string `json:"name"`
	Label          string `json:"label"`
	Type           string `json:"type"`
	FieldType      string `json:"fieldType"`
	GroupName      string `json:"groupName"`
	Description    string `json:"description,omitempty"`
	HasUniqueValue bool   `json:"hasUniqueValue"`
}

type accountInfo struct {
	PortalID json.Number `json:"portalId"`
	TimeZone string      `json:"timeZone"`
}

// v4 association shapes.

type assocCreateInput struct {
	From  objectRef   `json:"from"`
	To    objectRef   `json:"to"`
	Types []assocType `json:"types"`
}

type assocArchiveInput struct {
	From objectRef   `json:"from"`
	To   []objectRef `json:"to"`
}

type assocReadResponse struct {
	Results []struct {
		From struct {
			ID flexID `json:"id"`
		} `json:"from"`
		To []struct {
			ToObjectID flexID `json:"toObjectId"`
		} `json:"to"`
	} `json:"results"`
	Errors []batchError `json:"errors,omitempty"`
}

// apiError is the body of an error response, including the 429 shape.
type apiError struct {
	Status        string              `json:"status"`
	Message       string              `json:"message"`
	CorrelationID string              `json:"correlationId"`
	Category      string              `json:"category"`
	SubCategory   json.RawMessage     `json:"subCategory,omitempty"`
	Context       map[string][]string `json:"context,omitempty"`
	Errors        []errorDetail       `json:"errors,omitempty"`
	ErrorType     string              `json:"errorType,omitempty"`
	PolicyName    string              `json:"policyName,omitempty"`
}

// rawString renders a subCategory, which HubSpot sends as a string or an
// object, as text.
func rawString(r json.RawMessage) string {
	if len(r) == 0 || string(r) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(r, &s) == nil {
		return s
	}
	return string(r)
}
