package crmtest

import (
	"encoding/json"
	"strconv"
)

// HubSpot's request and response shapes as the fake reads and writes them.
// They are written independently of crm/hubspot's so that the client is
// tested against a second reading of HubSpot's documentation.

type objRef struct {
	ID string `json:"id"`
}

type assocType struct {
	Category string `json:"associationCategory"`
	TypeID   int    `json:"associationTypeId"`
}

type assocSpec struct {
	To    objRef      `json:"to"`
	Types []assocType `json:"types"`
}

// rawProps are property values as sent: strings, numbers, booleans or null.
type rawProps map[string]json.RawMessage

type createIn struct {
	Properties   rawProps    `json:"properties"`
	Associations []assocSpec `json:"associations"`
	TraceID      string      `json:"objectWriteTraceId"`
}

type updateIn struct {
	ID         string   `json:"id"`
	IDProperty string   `json:"idProperty"`
	Properties rawProps `json:"properties"`
	TraceID    string   `json:"objectWriteTraceId"`
}

type batchReadIn struct {
	IDProperty string   `json:"idProperty"`
	Inputs     []objRef `json:"inputs"`
	Properties []string `json:"properties"`
}

type objectOut struct {
	ID           string                  `json:"id"`
	Properties   map[string]*string      `json:"properties"`
	CreatedAt    string                  `json:"createdAt"`
	UpdatedAt    string                  `json:"updatedAt"`
	Archived     bool                    `json:"archived"`
	TraceID      string                  `json:"objectWriteTraceId,omitempty"`
	New          *bool                   `json:"new,omitempty"`
	Associations map[string]assocListOut `json:"associations,omitempty"`
}

type assocListOut struct {
	Results []assocItemOut `json:"results"`
}

type assocItemOut struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

type errorOut struct {
	Status      string              `json:"status"`
	Category    string              `json:"category"`
	Message     string              `json:"message"`
	Context     map[string][]string `json:"context,omitempty"`
	Errors      []errorDetailOut    `json:"errors,omitempty"`
	SubCategory string              `json:"subCategory,omitempty"`
}

type errorDetailOut struct {
	Message string `json:"message"`
	Code    string `json:"code,omitempty"`
	In      string `json:"in,omitempty"`
}

type batchOut struct {
	Status      string      `json:"status"`
	Results     []objectOut `json:"results"`
	Errors      []errorOut  `json:"errors,omitempty"`
	NumErrors   int         `json:"numErrors,omitempty"`
	StartedAt   string      `json:"startedAt"`
	CompletedAt string      `json:"completedAt"`
}

type nextOut struct {
	After string `json:"after"`
	Link  string `json:"link,omitempty"`
}

type pagingOut struct {
	Next *nextOut `json:"next,omitempty"`
}

type listOut struct {
	Results []objectOut `json:"results"`
	Paging  *pagingOut  `json:"paging,omitempty"`
}

type searchFilter struct {
	PropertyName string   `json:"propertyName"`
	Operator     string   `json:"operator"`
	Value        *string  `json:"value"`
	HighValue    *string  `json:"highValue"`
	Values       []string `json:"values"`
}

type searchIn struct {
	FilterGroups []struct {
		Filters []searchFilter `json:"filters"`
	} `json:"filterGroups"`
	Sorts      []json.RawMessage `json:"sorts"`
	Properties []string          `json:"properties"`
	Limit      *int              `json:"limit"`
	After      string            `json:"after"`
	Query      string            `json:"query"`
}

type searchOut struct {
	Total   int         `json:"total"`
	Results []objectOut `json:"results"`
	Paging  *pagingOut  `json:"paging,omitempty"`
}

type propertyDef struct {
	Name           string `json:"name"`
	Label          string `json:"label"`
	Type           string `json:"type"`
	FieldType      string `json:"fieldType"`
	GroupName      string `json:"groupName"`
	Description    string `json:"description"`
	HasUniqueValue bool   `json:"hasUniqueValue"`
	Hidden         bool   `json:"hidden"`
	FormField      bool   `json:"formField"`
	Calculated     bool   `json:"calculated"`
	CreatedAt      string `json:"createdAt,omitempty"`
	UpdatedAt      string `json:"updatedAt,omitempty"`
}

type assocCreateIn struct {
	From  objRef      `json:"from"`
	To    objRef      `json:"to"`
	Types []assocType `json:"types"`
}

type assocArchiveIn struct {
	From objRef   `json:"from"`
	To   []objRef `json:"to"`
}

type assocTypeOut struct {
	Category string  `json:"category"`
	TypeID   int     `json:"typeId"`
	Label    *string `json:"label"`
}

type assocToOut struct {
	ToObjectID       json.Number    `json:"toObjectId"`
	AssociationTypes []assocTypeOut `json:"associationTypes"`
}

type assocReadResult struct {
	From objRef       `json:"from"`
	To   []assocToOut `json:"to"`
}

type assocCreateResult struct {
	FromObjectTypeID string      `json:"fromObjectTypeId"`
	FromObjectID     json.Number `json:"fromObjectId"`
	ToObjectTypeID   string      `json:"toObjectTypeId"`
	ToObjectID       json.Number `json:"toObjectId"`
	Labels           []string    `json:"labels"`
}

type ownerOut struct {
	ID        string `json:"id"`
	Email     string `json:"email"`
	Type      string `json:"type"`
	FirstName string `json:"firstName"`
	LastName  string `json:"lastName"`
	UserID    int64  `json:"userId"`
	CreatedAt string `json:"createdAt"`
	UpdatedAt string `json:"updatedAt"`
	Archived  bool   `json:"archived"`
}

// number renders a numeric id as a JSON number (v4 shapes).
func number(id string) json.Number {
	if _, err := strconv.ParseInt(id, 10, 64); err == nil {
		return json.Number(id)
	}
	return json.Number("0")
}
