package config

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Federate is the federate right of an access rule (Rights.Federate),
// written in the file as true, false or an array of partner names
// ([[federation.partner]] name):
//
//	federate = true                      # every partner (the default)
//	federate = false                     # no other domain
//	federate = ["partner-a", "partner-b"] # these partners only
//
// The zero value is true, as for every unset right.
type Federate struct {
	// Only restricts federation to Partners; false allows every partner.
	Only bool `toml:"-"`
	// Partners are the partner names allowed when Only is set; none is
	// federate = false.
	Partners []string `toml:"-"`
	// bad says why the file's value is none of the three forms; the
	// loader reports it at the key (validateAccess).
	bad string `toml:"-"`
}

// FederateAll is federate = true.
func FederateAll() Federate { return Federate{} }

// FederateNone is federate = false.
func FederateNone() Federate { return Federate{Only: true} }

// FederateWith is federate = [names...].
func FederateWith(names ...string) Federate { return Federate{Only: true, Partners: names} }

// UnmarshalTOML implements go-toml's unstable.Unmarshaler: data is the
// value's TOML text. A value of another form is not an error here but
// remembered, so that validation reports it at the key's line with the
// file's other problems.
func (f *Federate) UnmarshalTOML(data []byte) error {
	*f = Federate{}
	var v struct {
		V any `toml:"v"`
	}
	if err := toml.Unmarshal(append([]byte("v = "), data...), &v); err != nil {
		// A table ([access.default.federate]) arrives as a document.
		var table map[string]any
		if toml.Unmarshal(data, &table) == nil {
			f.bad = "expected true, false or an array of partner names, got table"
		} else {
			f.bad = fmt.Sprintf("expected true, false or an array of partner names: %v", err)
		}
		return nil
	}
	switch x := v.V.(type) {
	case bool:
		f.Only = !x
	case []any:
		f.Only = true
		f.Partners = make([]string, 0, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				f.bad = fmt.Sprintf("expected true, false or an array of partner names, got %s at element %d", tomlKind(e), i)
				f.Partners = nil
				return nil
			}
			f.Partners = append(f.Partners, s)
		}
	default:
		f.bad = "expected true, false or an array of partner names, got " + tomlKind(x)
	}
	return nil
}

// tomlKind names the TOML kind of a value go-toml decoded into any.
func tomlKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case int64:
		return "integer"
	case float64:
		return "float"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	}
	return "date or time"
}

// Allows reports whether the right allows the named partner.
func (f Federate) Allows(partner string) bool {
	return !f.Only || slices.Contains(f.Partners, partner)
}

// String writes the right as in the file: "true", "false" or
// `["a", "b"]`.
func (f Federate) String() string {
	switch {
	case !f.Only:
		return "true"
	case len(f.Partners) == 0:
		return "false"
	}
	q := make([]string, len(f.Partners))
	for i, p := range f.Partners {
		q[i] = fmt.Sprintf("%q", p)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// validateFederate checks the federate right at key: its form, and that
// every name is a declared partner, once.
func (l *loader) validateFederate(key string, f Federate, partners []Partner) {
	if f.bad != "" {
		l.invalid(key, -1, "%s", f.bad)
		return
	}
	for i, name := range f.Partners {
		switch {
		case !slices.ContainsFunc(partners, func(p Partner) bool { return p.Name == name }):
			l.invalid(key, i, "unknown partner %q (declare it in [[federation.partner]])", name)
		case slices.Index(f.Partners, name) < i:
			l.invalid(key, i, "duplicate partner %q", name)
		}
	}
}
