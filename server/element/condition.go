package element

import (
	"encoding/xml"
	"errors"
	"io"
)

// StreamCondition maps an error of the Decoder to the RFC 6120 section
// 4.9.3 stream error condition a server answers it with, and a text; ok is
// false for an error that is not the Decoder's (I/O, a closed connection).
// XML that ends early (io.ErrUnexpectedEOF) is not-well-formed here: a
// transport that reads a live stream decides first whether the peer just
// went away.
func StreamCondition(err error) (cond, text string, ok bool) {
	var syn *xml.SyntaxError
	var nse *NamespaceError
	switch {
	case errors.As(err, &syn), errors.As(err, &nse), errors.Is(err, io.ErrUnexpectedEOF):
		return "not-well-formed", "", true
	case errors.Is(err, ErrTooDeep):
		return "policy-violation", "nesting too deep", true
	case errors.Is(err, ErrTooMany):
		return "policy-violation", "too many elements", true
	case errors.Is(err, ErrRestricted):
		return "restricted-xml", "comments, processing instructions and DTDs are not allowed", true
	case errors.Is(err, ErrUnsupportedEncoding):
		return "unsupported-encoding", "only UTF-8 is supported", true
	case errors.Is(err, ErrUnsupportedVersion):
		return "unsupported-version", "only XML 1.0 is supported", true
	}
	return "", "", false
}
