package roster

import (
	"strings"
	"testing"

	"github.com/palisade-im/palisade/storage"
)

// parseState reads an RFC 6121 Appendix A state name.
func parseState(t testing.TB, name string) state {
	t.Helper()
	base, pend, _ := strings.Cut(name, " + ")
	var s state
	switch base {
	case "None":
	case "To":
		s.to = true
	case "From":
		s.from = true
	case "Both":
		s.to, s.from = true, true
	default:
		t.Fatalf("bad state %q", name)
	}
	switch pend {
	case "":
	case "Pending Out":
		s.pendOut = true
	case "Pending In":
		s.pendIn = true
	case "Pending Out+In":
		s.pendOut, s.pendIn = true, true
	default:
		t.Fatalf("bad state %q", name)
	}
	if s.String() != name {
		t.Fatalf("state %q renders as %q", name, s.String())
	}
	return s
}

// row is one row of an Appendix A table; next "" means "no state change".
type row struct {
	typ, cur string
	yes      bool // ROUTE? (A.2) or DELIVER? (A.3)
	next     string
}

// Appendix A.2: server processing of outbound presence subscription stanzas.
var outboundTable = []row{
	// A.2.1 Outbound "subscribe"
	{"subscribe", "None", true, "None + Pending Out"},
	{"subscribe", "None + Pending Out", true, ""},
	{"subscribe", "None + Pending In", true, "None + Pending Out+In"},
	{"subscribe", "None + Pending Out+In", true, ""},
	{"subscribe", "To", true, ""},
	{"subscribe", "To + Pending In", true, ""},
	{"subscribe", "From", true, "From + Pending Out"},
	{"subscribe", "From + Pending Out", true, ""},
	{"subscribe", "Both", true, ""},
	// A.2.2 Outbound "unsubscribe"
	{"unsubscribe", "None", true, ""},
	{"unsubscribe", "None + Pending Out", true, "None"},
	{"unsubscribe", "None + Pending In", true, ""},
	{"unsubscribe", "None + Pending Out+In", true, "None + Pending In"},
	{"unsubscribe", "To", true, "None"},
	{"unsubscribe", "To + Pending In", true, "None + Pending In"},
	{"unsubscribe", "From", true, ""},
	{"unsubscribe", "From + Pending Out", true, "From"},
	{"unsubscribe", "Both", true, "From"},
	// A.2.3 Outbound "subscribed" (the "no" rows of None, None + Pending
	// Out and To are pre-approvals, section 3.4)
	{"subscribed", "None", false, ""},
	{"subscribed", "None + Pending Out", false, ""},
	{"subscribed", "None + Pending In", true, "From"},
	{"subscribed", "None + Pending Out+In", true, "From + Pending Out"},
	{"subscribed", "To", false, ""},
	{"subscribed", "To + Pending In", true, "Both"},
	{"subscribed", "From", false, ""},
	{"subscribed", "From + Pending Out", false, ""},
	{"subscribed", "Both", false, ""},
	// A.2.4 Outbound "unsubscribed"
	{"unsubscribed", "None", false, ""},
	{"unsubscribed", "None + Pending Out", false, ""},
	{"unsubscribed", "None + Pending In", true, "None"},
	{"unsubscribed", "None + Pending Out+In", true, "None + Pending Out"},
	{"unsubscribed", "To", false, ""},
	{"unsubscribed", "To + Pending In", true, "To"},
	{"unsubscribed", "From", true, "None"},
	{"unsubscribed", "From + Pending Out", true, "None + Pending Out"},
	{"unsubscribed", "Both", true, "To"},
}

// Appendix A.3: server processing of inbound presence subscription stanzas.
var inboundTable = []row{
	// A.3.1 Inbound "subscribe" (the From rows are auto-replied)
	{"subscribe", "None", true, "None + Pending In"},
	{"subscribe", "None + Pending Out", true, "None + Pending Out+In"},
	{"subscribe", "None + Pending In", false, ""},
	{"subscribe", "None + Pending Out+In", false, ""},
	{"subscribe", "To", true, "To + Pending In"},
	{"subscribe", "To + Pending In", false, ""},
	{"subscribe", "From", false, ""},
	{"subscribe", "From + Pending Out", false, ""},
	{"subscribe", "Both", false, ""},
	// A.3.2 Inbound "unsubscribe"
	{"unsubscribe", "None", false, ""},
	{"unsubscribe", "None + Pending Out", false, ""},
	{"unsubscribe", "None + Pending In", true, "None"},
	{"unsubscribe", "None + Pending Out+In", true, "None + Pending Out"},
	{"unsubscribe", "To", false, ""},
	{"unsubscribe", "To + Pending In", true, "To"},
	{"unsubscribe", "From", true, "None"},
	{"unsubscribe", "From + Pending Out", true, "None + Pending Out"},
	{"unsubscribe", "Both", true, "To"},
	// A.3.3 Inbound "subscribed"
	{"subscribed", "None", false, ""},
	{"subscribed", "None + Pending Out", true, "To"},
	{"subscribed", "None + Pending In", false, ""},
	{"subscribed", "None + Pending Out+In", true, "To + Pending In"},
	{"subscribed", "To", false, ""},
	{"subscribed", "To + Pending In", false, ""},
	{"subscribed", "From", false, ""},
	{"subscribed", "From + Pending Out", true, "Both"},
	{"subscribed", "Both", false, ""},
	// A.3.4 Inbound "unsubscribed"
	{"unsubscribed", "None", false, ""},
	{"unsubscribed", "None + Pending Out", true, "None"},
	{"unsubscribed", "None + Pending In", false, ""},
	{"unsubscribed", "None + Pending Out+In", true, "None + Pending In"},
	{"unsubscribed", "To", true, "None"},
	{"unsubscribed", "To + Pending In", true, "None + Pending In"},
	{"unsubscribed", "From", false, ""},
	{"unsubscribed", "From + Pending Out", true, "From"},
	{"unsubscribed", "Both", true, "From"},
}

func (r row) want() string {
	if r.next == "" {
		return r.cur
	}
	return r.next
}

func TestOutboundTable(t *testing.T) {
	for _, r := range outboundTable {
		route, next := outbound(r.typ, parseState(t, r.cur))
		if route != r.yes || next.String() != r.want() {
			t.Errorf("outbound %s in %q: route=%v next=%q, want %v %q", r.typ, r.cur, route, next, r.yes, r.want())
		}
	}
}

func TestInboundTable(t *testing.T) {
	for _, r := range inboundTable {
		deliver, next := inbound(r.typ, parseState(t, r.cur))
		if deliver != r.yes || next.String() != r.want() {
			t.Errorf("inbound %s in %q: deliver=%v next=%q, want %v %q", r.typ, r.cur, deliver, next, r.yes, r.want())
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	for _, name := range []string{"None", "None + Pending Out", "None + Pending In", "None + Pending Out+In",
		"To", "To + Pending In", "From", "From + Pending Out", "Both"} {
		var it storage.RosterItem
		parseState(t, name).apply(&it)
		if got := stateOf(it).String(); got != name {
			t.Errorf("%s stored and read back as %s", name, got)
		}
	}
}
