package config

import (
	"sort"
	"strconv"
	"strings"
)

// Error is one problem in a configuration file.
type Error struct {
	// File is the file name given to Load or Parse.
	File string
	// Line is the 1-based line of the problem, 0 if unknown.
	Line int
	// Col is the 1-based byte column, 0 if unknown.
	Col int
	// Key is the dotted key concerned, e.g. "limits.max_stanza_bytes"; it
	// may be empty for syntax errors.
	Key string
	// Msg describes the problem.
	Msg string
}

// Error formats the error as "file:line:col: key: msg", leaving out the
// parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(":")
		if e.Col > 0 {
			b.WriteString(strconv.Itoa(e.Col))
			b.WriteString(":")
		}
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a configuration, sorted by line. Load and
// Parse return it as a *Errors.
type Errors []*Error

// Error prints one error per line.
func (es *Errors) Error() string {
	lines := make([]string, len(*es))
	for i, e := range *es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual errors, for errors.Is and errors.As.
func (es *Errors) Unwrap() []error {
	out := make([]error, len(*es))
	for i, e := range *es {
		out[i] = e
	}
	return out
}

// sortErrors orders errors by line, then column, then key.
func sortErrors(es Errors) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		return a.Key < b.Key
	})
}

// FieldError is what a module config's Validate returns to name the key it
// is about, relative to its section: FieldError{Key: "url"} in
// [modules.ldap] is reported at modules.ldap.url, with that key's line.
// Several may be returned together with errors.Join.
type FieldError struct {
	// Key is the key inside the module section, e.g. "url" or "tls.ca".
	Key string
	// Msg describes the problem.
	Msg string
}

// Error formats the error as "key: msg".
func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }
