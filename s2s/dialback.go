package s2s

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/palisade-im/palisade/server/element"
)

// dialbackKey is the XEP-0185 key (XEP-0220 section 2.4): HMAC-SHA256
// keyed with the hex SHA-256 of the secret over "receiving originating
// streamid", in hex.
func dialbackKey(secret []byte, receiving, originating, id string) string {
	k := sha256.Sum256(secret)
	m := hmac.New(sha256.New, []byte(hex.EncodeToString(k[:])))
	m.Write([]byte(receiving + " " + originating + " " + id))
	return hex.EncodeToString(m.Sum(nil))
}

// validKey reports whether key is the one this server issued for the
// stream id from originating (local) to receiving.
func (s *Server) validKey(receiving, originating, id, key string) bool {
	if id == "" || key == "" {
		return false
	}
	want := dialbackKey(s.cfg.DialbackSecret, receiving, originating, id)
	return hmac.Equal([]byte(want), []byte(key))
}

// dbElement builds a dialback element (db:result or db:verify).
func dbElement(local, from, to, id, typ, key string) *element.Element {
	el := element.New(nsDialback, local)
	el.SetAttr("from", from)
	el.SetAttr("to", to)
	if id != "" {
		el.SetAttr("id", id)
	}
	if typ != "" {
		el.SetAttr("type", typ)
	}
	if key != "" {
		el.SetText(key)
	}
	return el
}

// verifyDialback asks the authoritative server of originating whether key
// is the one it issued for our stream id (XEP-0220 section 2.1.2: the
// receiving server's side). It dials a stream of its own, under TLS.
func (s *Server) verifyDialback(ctx context.Context, local, originating, id, key string) (bool, error) {
	p := s.Partner(originating)
	if p == nil {
		return false, fmt.Errorf("%s is not a federation partner", originating)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.fed().ConnectTimeout))
	defer cancel()
	c, err := s.connect(ctx, route{local: local, remote: originating}, p)
	if err != nil {
		return false, err
	}
	defer c.close()
	if err := c.f.writeElement(dbElement("verify", local, originating, id, "", key)); err != nil {
		return false, fmt.Errorf("send db:verify: %w", err)
	}
	deadline, _ := ctx.Deadline()
	for {
		_ = c.f.raw.SetReadDeadline(deadline)
		el, err := c.f.next()
		if err != nil {
			return false, fmt.Errorf("read db:verify answer: %w", err)
		}
		if el.Space == nsStream && el.Local == "error" {
			return false, fmt.Errorf("db:verify answered by %s", describeStreamError(el))
		}
		if el.Space != nsDialback || el.Local != "verify" || el.Attr("id") != id {
			continue
		}
		_ = c.f.writeClose()
		return el.Attr("type") == "valid", nil
	}
}

// describeStreamError renders a received <stream:error/> for logs.
func describeStreamError(el *element.Element) string {
	cond, text := "", ""
	for _, c := range el.Elements() {
		if c.Space != nsStreams {
			continue
		}
		if c.Local == "text" {
			text = c.Text()
		} else {
			cond = c.Local
		}
	}
	if text != "" {
		return "stream error " + cond + ": " + text
	}
	return "stream error " + cond
}
