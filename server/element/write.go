package element

import (
	"strconv"
	"unicode/utf8"
)

// AppendTo serializes e onto buf. parentNS is the default namespace in scope
// where e is written: e gets an xmlns attribute only when its namespace
// differs. The output never declares prefixes except for namespaced
// attributes other than xml:*.
func (e *Element) AppendTo(buf []byte, parentNS string) []byte {
	return e.appendTo(buf, parentNS, 0)
}

// String serializes e with its namespace declared.
func (e *Element) String() string {
	return string(e.appendTo(nil, "", 0))
}

func (e *Element) appendTo(buf []byte, parentNS string, prefixN int) []byte {
	buf = append(buf, '<')
	buf = append(buf, e.Local...)
	if e.Space != parentNS {
		buf = append(buf, ` xmlns="`...)
		buf = escapeAttr(buf, e.Space)
		buf = append(buf, '"')
	}
	for _, a := range e.Attrs {
		buf = append(buf, ' ')
		switch a.Space {
		case "":
		case xmlNS:
			buf = append(buf, "xml:"...)
		default:
			prefixN++
			p := "ns" + strconv.Itoa(prefixN)
			buf = append(buf, "xmlns:"...)
			buf = append(buf, p...)
			buf = append(buf, `="`...)
			buf = escapeAttr(buf, a.Space)
			buf = append(buf, `" `...)
			buf = append(buf, p...)
			buf = append(buf, ':')
		}
		buf = append(buf, a.Local...)
		buf = append(buf, `="`...)
		buf = escapeAttr(buf, a.Value)
		buf = append(buf, '"')
	}
	if len(e.Nodes) == 0 {
		return append(buf, "/>"...)
	}
	buf = append(buf, '>')
	for _, n := range e.Nodes {
		if n.El != nil {
			buf = n.El.appendTo(buf, e.Space, prefixN)
		} else {
			buf = EscapeText(buf, n.Text)
		}
	}
	buf = append(buf, "</"...)
	buf = append(buf, e.Local...)
	return append(buf, '>')
}

// EscapeText appends s escaped as XML character data. Characters not allowed
// in XML 1.0 are replaced by U+FFFD.
func EscapeText(buf []byte, s string) []byte {
	return escape(buf, s, false)
}

func escapeAttr(buf []byte, s string) []byte {
	return escape(buf, s, true)
}

func escape(buf []byte, s string, attr bool) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			var esc string
			switch {
			case c == '&':
				esc = "&amp;"
			case c == '<':
				esc = "&lt;"
			case c == '>':
				esc = "&gt;"
			case attr && c == '"':
				esc = "&quot;"
			case attr && c == '\'':
				esc = "&apos;"
			case attr && c == '\n':
				esc = "&#xA;"
			case attr && c == '\r', !attr && c == '\r':
				esc = "&#xD;"
			case attr && c == '\t':
				esc = "&#x9;"
			case c < 0x20 && c != '\n' && c != '\t':
				esc = "\uFFFD"
			}
			if esc != "" {
				buf = append(buf, s[last:i]...)
				buf = append(buf, esc...)
				last = i + 1
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == 0xFFFE || r == 0xFFFF {
			buf = append(buf, s[last:i]...)
			buf = append(buf, "\uFFFD"...)
			last = i + size
		}
		i += size
	}
	return append(buf, s[last:]...)
}
