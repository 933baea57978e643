package rules

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"

	"github.com/rapportsync/rapport/matching"
)

// The expression environment of CONTRACT.md ("Rule files"). Field names are
// the `expr` tags; the Go types stay unexported, and compile errors are
// rewritten to speak of "event", "attendee"… rather than of these types.
//
// Nested structs are pointers: expr fetches a field through reflection, and a
// struct value would be copied into an interface on every access.
type evalEnv struct {
	Event     *eventEnv      `expr:"event"`
	External  []*attendeeEnv `expr:"external"`
	Companies []*companyEnv  `expr:"companies"`
	Owner     *attendeeEnv   `expr:"owner"`
	Workspace *workspaceEnv  `expr:"workspace"`
	// Logged reports that the meeting is already logged in the CRM, so a
	// cancellation can be told apart from an event that never mattered.
	Logged bool `expr:"logged"`
}

type eventEnv struct {
	ID            string         `expr:"id"`
	ICalUID       string         `expr:"ical_uid"`
	Title         string         `expr:"title"`
	Description   string         `expr:"description"`
	Location      string         `expr:"location"`
	Start         time.Time      `expr:"start"`
	End           time.Time      `expr:"end"`
	Duration      time.Duration  `expr:"duration"`
	AllDay        bool           `expr:"all_day"`
	Status        string         `expr:"status"`
	Visibility    string         `expr:"visibility"`
	EventType     string         `expr:"event_type"`
	Recurring     bool           `expr:"recurring"`
	Organizer     *attendeeEnv   `expr:"organizer"`
	Attendees     []*attendeeEnv `expr:"attendees"`
	ConferenceURL string         `expr:"conference_url"`
	// Source is the provider of this copy: google, microsoft or calendly.
	Source string `expr:"source"`
	// ShowAs is free, tentative, busy, oof or workingElsewhere; "" when the
	// provider does not say.
	ShowAs string `expr:"show_as"`
	// Booking is nil for calendar events.
	Booking *bookingEnv `expr:"booking"`
}

type bookingEnv struct {
	EventType   string       `expr:"event_type"`
	Answers     []*answerEnv `expr:"answers"`
	UTM         *utmEnv      `expr:"utm"`
	Rescheduled bool         `expr:"rescheduled"`
}

type answerEnv struct {
	Question string `expr:"question"`
	Answer   string `expr:"answer"`
}

// utmEnv holds a booking's tracking parameters; each is "" when absent, so
// a rule may compare them without checking for nil.
type utmEnv struct {
	Source   string `expr:"source"`
	Medium   string `expr:"medium"`
	Campaign string `expr:"campaign"`
	Content  string `expr:"content"`
	Term     string `expr:"term"`
}

type attendeeEnv struct {
	Email     string      `expr:"email"`
	Name      string      `expr:"name"`
	Domain    string      `expr:"domain"`
	Internal  bool        `expr:"internal"`
	FreeMail  bool        `expr:"free_mail"`
	Blocked   bool        `expr:"blocked"`
	Resource  bool        `expr:"resource"`
	Organizer bool        `expr:"organizer"`
	Self      bool        `expr:"self"`
	Optional  bool        `expr:"optional"`
	Response  string      `expr:"response"`
	Company   *companyEnv `expr:"company"`
	Contact   *contactEnv `expr:"contact"`
}

type companyEnv struct {
	ID         string       `expr:"id"`
	Name       string       `expr:"name"`
	Domain     string       `expr:"domain"`
	Properties companyProps `expr:"properties"`
}

type contactEnv struct {
	ID         string       `expr:"id"`
	Properties contactProps `expr:"properties"`
}

type workspaceEnv struct {
	ID   string `expr:"id"`
	Name string `expr:"name"`
}

const (
	// maxNodes bounds the size of one expression.
	maxNodes = 2000
	// memoryBudget bounds what one evaluation may allocate (expr counts
	// elements of ranges, maps and filters built at run time).
	memoryBudget = 100_000
)

// compileOptions are shared by every rule; the domain function is the one
// matching uses, so a rule sees the same domain an attendee's class does.
var compileOptions = []expr.Option{
	expr.Env(evalEnv{}),
	expr.AsBool(),
	expr.MaxNodes(maxNodes),
	expr.Function("domain", func(params ...any) (any, error) {
		s, _ := params[0].(string)
		d, err := matching.Domain(s)
		if err != nil {
			return "", nil
		}
		return d, nil
	}, new(func(string) string)),
	// number, date and has read CRM property values, which are strings as
	// HubSpot returns them. A value number or date cannot read is a
	// run-time error: the rule does not match and the trace says why.
	expr.Function("number", func(params ...any) (any, error) {
		return parseNumber(params[0].(string))
	}, new(func(string) float64)),
	expr.Function("has", func(params ...any) (any, error) {
		return strings.TrimSpace(params[0].(string)) != "", nil
	}, new(func(string) bool)),
	// date replaces expr's built-in date for one argument, adding HubSpot's
	// milliseconds since the epoch to the layouts it knows; with a layout
	// (and a time zone) it is the built-in.
	expr.Function("date", dateFunc,
		new(func(string) time.Time),
		new(func(string, string) time.Time),
		new(func(string, string, string) time.Time),
		new(func(*time.Location, string) time.Time),
		new(func(*time.Location, string, string) time.Time),
	),
}

// parseNumber reads a HubSpot number property: a decimal such as "12500"
// or "0.75", with surrounding spaces ignored.
func parseNumber(s string) (float64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("number: the value is empty")
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("number: %q is not a number", s)
	}
	return f, nil
}

// builtinDate is expr's own date function, which date delegates to.
var builtinDate = func() func(...any) (any, error) {
	for _, f := range builtin.Builtins {
		if f.Name == "date" {
			return f.Func
		}
	}
	panic("rules: expr has no built-in date function")
}()

// dateFunc reads a HubSpot date or datetime property: milliseconds since
// the epoch ("1767225600000"), or ISO 8601 ("2026-01-01",
// "2026-01-01T00:00:00.000Z"); with more arguments it is expr's date.
func dateFunc(params ...any) (any, error) {
	if len(params) != 1 {
		return builtinDate(params...)
	}
	s := strings.TrimSpace(params[0].(string))
	if s == "" {
		return nil, errors.New("date: the value is empty")
	}
	if isDigits(s) {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("date: %q is out of range", s)
		}
		return time.UnixMilli(ms).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := builtinDate(s)
	if err != nil {
		return nil, fmt.Errorf("date: %q is neither milliseconds since the epoch nor an ISO 8601 date", s)
	}
	return t, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// compile compiles one `when`. The error, if any, is an expr *file.Error
// (with a character offset into src) or a plain error.
func compile(src string) (*vm.Program, error) {
	return expr.Compile(src, compileOptions...)
}

func newVM() any { return &vm.VM{MemoryBudget: memoryBudget} }

var typeNames = strings.NewReplacer(
	"*rules.attendeeEnv", "attendee",
	"rules.attendeeEnv", "attendee",
	"*rules.companyEnv", "company",
	"rules.companyEnv", "company",
	"*rules.contactEnv", "contact",
	"rules.contactEnv", "contact",
	"rules.companyProps", "company properties",
	"rules.contactProps", "contact properties",
	"rules.eventEnv", "event",
	"*rules.bookingEnv", "booking",
	"rules.bookingEnv", "booking",
	"*rules.answerEnv", "answer",
	"rules.answerEnv", "answer",
	"*rules.utmEnv", "utm",
	"rules.utmEnv", "utm",
	"rules.workspaceEnv", "workspace",
	"rules.evalEnv", "environment",
)

// exprError splits an expr error into its message and character offset
// (-1 when it has none).
func exprError(err error) (string, int) {
	var fe *file.Error
	if errors.As(err, &fe) {
		return typeNames.Replace(fe.Message), fe.From
	}
	return typeNames.Replace(err.Error()), -1
}
