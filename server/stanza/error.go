package stanza

import "github.com/palisade-im/palisade/server/element"

// ErrorType is the type attribute of a stanza error (RFC 6120 8.3.2).
type ErrorType string

// Error types.
const (
	Auth     ErrorType = "auth"
	Cancel   ErrorType = "cancel"
	Continue ErrorType = "continue"
	Modify   ErrorType = "modify"
	Wait     ErrorType = "wait"
)

// Condition is a defined stanza error condition (RFC 6120 8.3.3).
type Condition string

// Stanza error conditions.
const (
	BadRequest            Condition = "bad-request"
	Conflict              Condition = "conflict"
	FeatureNotImplemented Condition = "feature-not-implemented"
	Forbidden             Condition = "forbidden"
	Gone                  Condition = "gone"
	InternalServerError   Condition = "internal-server-error"
	ItemNotFound          Condition = "item-not-found"
	JIDMalformed          Condition = "jid-malformed"
	NotAcceptable         Condition = "not-acceptable"
	NotAllowed            Condition = "not-allowed"
	NotAuthorized         Condition = "not-authorized"
	PolicyViolation       Condition = "policy-violation"
	RecipientUnavailable  Condition = "recipient-unavailable"
	Redirect              Condition = "redirect"
	RegistrationRequired  Condition = "registration-required"
	RemoteServerNotFound  Condition = "remote-server-not-found"
	RemoteServerTimeout   Condition = "remote-server-timeout"
	ResourceConstraint    Condition = "resource-constraint"
	ServiceUnavailable    Condition = "service-unavailable"
	SubscriptionRequired  Condition = "subscription-required"
	UndefinedCondition    Condition = "undefined-condition"
	UnexpectedRequest     Condition = "unexpected-request"
)

// Error is a stanza error. It implements error so handlers can return it.
type Error struct {
	Type      ErrorType
	Condition Condition
	Text      string
	// App is an optional application-specific condition element.
	App *element.Element
}

func (e *Error) Error() string {
	if e.Text != "" {
		return string(e.Condition) + ": " + e.Text
	}
	return string(e.Condition)
}

// Element renders the <error/> child.
func (e *Error) Element() *element.Element {
	el := element.New(NSClient, "error", element.A("type", string(e.Type)))
	el.Append(element.New(NSStanzas, string(e.Condition)))
	if e.Text != "" {
		el.Append(element.New(NSStanzas, "text").SetText(e.Text))
	}
	el.Append(e.App)
	return el
}

// Err is shorthand for a new *Error.
func Err(t ErrorType, c Condition, text string) *Error {
	return &Error{Type: t, Condition: c, Text: text}
}
