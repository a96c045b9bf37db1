package loadgen

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSplitterElements(t *testing.T) {
	stream := `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'>` +
		`<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-256</mechanism></mechanisms></stream:features>` +
		"\n <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" +
		`<message from='a@b/c' to="d@e" note='x/>y&gt;'><body>1 2 a &lt; b</body><x a="q'>"/></message>` +
		`<!-- comment --><iq type='result' id='b1'><bind><jid>u@localhost/r</jid></bind></iq>` +
		`</stream:stream>`
	sp := newSplitter(strings.NewReader(stream))
	want := []string{
		`<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-256</mechanism></mechanisms></stream:features>`,
		`<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`,
		`<message from='a@b/c' to="d@e" note='x/>y&gt;'><body>1 2 a &lt; b</body><x a="q'>"/></message>`,
		`<iq type='result' id='b1'><bind><jid>u@localhost/r</jid></bind></iq>`,
	}
	for i, w := range want {
		el, err := sp.next()
		if err != nil {
			t.Fatalf("element %d: %v", i, err)
		}
		if string(el) != w {
			t.Errorf("element %d:\n got %s\nwant %s", i, el, w)
		}
	}
	if !strings.Contains(string(sp.header), "id='x'") {
		t.Errorf("header = %s", sp.header)
	}
	if _, err := sp.next(); !errors.Is(err, errStreamEnd) {
		t.Errorf("after </stream:stream>: %v, want errStreamEnd", err)
	}
}

func TestElementHelpers(t *testing.T) {
	feats := []byte(`<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-256</mechanism></mechanisms></stream:features>`)
	if got := strings.Join(mechanisms(feats), ","); got != "PLAIN,SCRAM-SHA-256" {
		t.Errorf("mechanisms = %q", got)
	}
	if n := string(elemName(feats)); n != "features" {
		t.Errorf("elemName = %q", n)
	}
	iq := []byte(`<iq xmlns='jabber:client' xml:id='z' id="b1" type='result'><bind><jid>u@localhost/r</jid></bind></iq>`)
	if v, ok := attr(iq, "id"); !ok || v != "b1" {
		t.Errorf("attr id = %q %v (must not match xml:id)", v, ok)
	}
	if v, _ := attr(iq, "type"); v != "result" {
		t.Errorf("attr type = %q", v)
	}
	if j, ok := childText(iq, "jid"); !ok || string(j) != "u@localhost/r" {
		t.Errorf("childText jid = %q %v", j, ok)
	}
	if _, ok := childText(iq, "missing"); ok {
		t.Error("childText found a missing element")
	}
}

func TestMessageFormat(t *testing.T) {
	m := message(nil, "u1@localhost/r1", 123456789, 42)
	if len(m) != MessageSize {
		t.Errorf("message is %d bytes, want %d: %s", len(m), MessageSize, m)
	}
	ts, ok := bodyTimestamp(m)
	if !ok || ts != 123456789 {
		t.Errorf("bodyTimestamp = %d %v", ts, ok)
	}
	if _, ok := bodyTimestamp([]byte(`<presence/>`)); ok {
		t.Error("presence has no timestamp")
	}
	if bare("a@b/c/d") != "a@b" || bare("a@b") != "a@b" {
		t.Error("bare")
	}
	if n := scramIterations([]byte("r=abc,s=c2FsdA==,i=4096")); n != 4096 {
		t.Errorf("scramIterations = %d", n)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 100000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {0.999, 99900 * time.Microsecond}} {
		got := h.Quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d < -0.02 || d > 0.02 {
			t.Errorf("q%.3f = %v, want %v within 2%%", c.q, got, c.want)
		}
	}
	if h.Max() != 100*time.Millisecond {
		t.Errorf("max = %v", h.Max())
	}
	var a, b Histogram
	a.Record(time.Millisecond)
	b.Record(3 * time.Millisecond)
	a.Merge(&b)
	if a.Count() != 2 || a.Quantile(1) != 3*time.Millisecond {
		t.Errorf("merge: count %d max %v", a.Count(), a.Quantile(1))
	}
	var small Histogram
	small.Record(5)
	if small.Quantile(0.5) != 5 {
		t.Errorf("small value = %v", small.Quantile(0.5))
	}
}
