package c2s

import (
	"testing"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"mellium.im/xmpp/jid"
)

// BenchmarkReadStanzaRated is BenchmarkReadStanza with the session's
// byte-rate bucket on, at a rate the loop never reaches: the bucket's
// cost on the hot path, without its pauses.
func BenchmarkReadStanzaRated(b *testing.B) {
	tr := newTCPTransport(&loopConn{msg: []byte(benchMessage)}, nil, bounds{bytes: 1 << 16, limits: element.Limits{MaxNodes: 8192}}, 0)
	if ev, err := tr.next(); err != nil || ev.kind != evOpen {
		b.Fatalf("stream header: %v %v", ev.kind, err)
	}
	tr.limitRead(newReadBucket(1<<40, 1<<30))
	from := jid.MustParse("alice@localhost/a")
	b.SetBytes(int64(len(benchMessage)))
	b.ReportAllocs()
	for b.Loop() {
		ev, err := tr.next()
		if err != nil {
			b.Fatal(err)
		}
		ev.el.RemoveAttr("from")
		st, err := stanza.Parse(ev.el)
		if err != nil {
			b.Fatal(err)
		}
		st.SetFrom(from)
	}
}
