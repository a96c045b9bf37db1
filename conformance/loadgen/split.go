package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// errStreamEnd is returned by next when the server closes its stream.
var errStreamEnd = errors.New("server closed the stream")

// splitter cuts an XMPP stream into its top-level elements without
// decoding them: it tracks tag depth and quoted attribute values, which is
// all a well-formed server stream needs. The first start tag at depth 0 is
// the stream header; every complete element at depth 1 is returned whole.
type splitter struct {
	r      *bufio.Reader
	depth  int
	header []byte // the last stream header seen
	elem   []byte // the element being collected (reused)
	max    int
}

func newSplitter(r io.Reader) *splitter {
	return &splitter{r: bufio.NewReaderSize(r, 4096), max: 1 << 20}
}

// restart forgets the current stream (after STARTTLS or SASL success).
func (s *splitter) restart(r io.Reader) {
	if r != nil {
		s.r = bufio.NewReaderSize(r, 4096)
	}
	s.depth = 0
	s.header = nil
}

// next returns the next top-level element. The slice is valid until the
// next call.
func (s *splitter) next() ([]byte, error) {
	s.elem = s.elem[:0]
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			return nil, err
		}
		if b != '<' {
			if s.depth >= 2 {
				s.elem = append(s.elem, b)
			}
			continue
		}
		start := len(s.elem)
		if s.depth < 2 {
			s.elem = s.elem[:0]
			start = 0
		}
		s.elem = append(s.elem, '<')
		c, err := s.r.ReadByte()
		if err != nil {
			return nil, err
		}
		s.elem = append(s.elem, c)
		switch c {
		case '?', '!':
			if err := s.skipTag(); err != nil {
				return nil, err
			}
			s.elem = s.elem[:start]
			continue
		case '/':
			if err := s.readTag(); err != nil {
				return nil, err
			}
			s.depth--
			switch {
			case s.depth == 1:
				return s.elem, nil
			case s.depth <= 0:
				return nil, errStreamEnd
			}
			continue
		}
		selfClosing, err := s.readTagAttrs()
		if err != nil {
			return nil, err
		}
		if selfClosing {
			if s.depth == 1 {
				return s.elem, nil
			}
			if s.depth == 0 {
				return nil, fmt.Errorf("stream header is an empty element: %q", s.elem)
			}
			continue
		}
		s.depth++
		if s.depth == 1 {
			s.header = append(s.header[:0], s.elem...)
			s.elem = s.elem[:0]
		}
		if len(s.elem) > s.max {
			return nil, fmt.Errorf("element longer than %d bytes", s.max)
		}
	}
}

// skipTag skips a declaration or comment up to its '>'.
func (s *splitter) skipTag() error {
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			return err
		}
		if b == '>' {
			return nil
		}
	}
}

// readTag copies an end tag up to and including '>'.
func (s *splitter) readTag() error {
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			return err
		}
		s.elem = append(s.elem, b)
		if b == '>' {
			return nil
		}
	}
}

// readTagAttrs copies a start tag up to '>' honouring quotes and reports
// whether it ended with "/>".
func (s *splitter) readTagAttrs() (bool, error) {
	var quote byte
	prev := byte(0)
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			return false, err
		}
		s.elem = append(s.elem, b)
		switch {
		case quote != 0:
			if b == quote {
				quote = 0
			}
		case b == '"' || b == '\'':
			quote = b
		case b == '>':
			return prev == '/', nil
		}
		prev = b
		if len(s.elem) > s.max {
			return false, fmt.Errorf("tag longer than %d bytes", s.max)
		}
	}
}

// elemName returns the local name of the element's start tag.
func elemName(el []byte) []byte {
	if len(el) < 2 || el[0] != '<' {
		return nil
	}
	end := 1
	for end < len(el) && !isSpace(el[end]) && el[end] != '>' && el[end] != '/' {
		end++
	}
	name := el[1:end]
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	return name
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// childText returns the text of the first descendant element named local
// (any prefix), or nil.
func childText(el []byte, local string) ([]byte, bool) {
	i := 0
	for {
		j := bytes.IndexByte(el[i:], '<')
		if j < 0 {
			return nil, false
		}
		i += j
		name := elemName(el[i:])
		if string(name) == local && (i+1 >= len(el) || el[i+1] != '/') {
			gt := bytes.IndexByte(el[i:], '>')
			if gt < 0 {
				return nil, false
			}
			if el[i+gt-1] == '/' {
				return []byte{}, true
			}
			rest := el[i+gt+1:]
			k := bytes.IndexByte(rest, '<')
			if k < 0 {
				return nil, false
			}
			return rest[:k], true
		}
		i++
	}
}

// attr returns the value of a plain attribute of the element's start tag.
func attr(el []byte, name string) (string, bool) {
	gt := bytes.IndexByte(el, '>')
	if gt < 0 {
		gt = len(el)
	}
	tag := el[:gt]
	for i := 0; i < len(tag); {
		k := bytes.Index(tag[i:], []byte(name+"="))
		if k < 0 {
			return "", false
		}
		k += i
		v := k + len(name) + 1
		if k > 0 && isSpace(tag[k-1]) && v < len(tag) && (tag[v] == '"' || tag[v] == '\'') {
			q := tag[v]
			e := bytes.IndexByte(tag[v+1:], q)
			if e < 0 {
				return "", false
			}
			return string(tag[v+1 : v+1+e]), true
		}
		i = k + 1
	}
	return "", false
}
