package rsm

import (
	"errors"
	"testing"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in   string
		want Request
		bad  bool
	}{
		{`<set xmlns='http://jabber.org/protocol/rsm'/>`, None, false},
		{`<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><after>a</after></set>`, Request{Max: 10, After: "a", Index: -1}, false},
		{`<set xmlns='http://jabber.org/protocol/rsm'><max>5</max><before/></set>`, Request{Max: 5, Last: true, Index: -1}, false},
		{`<set xmlns='http://jabber.org/protocol/rsm'><before>b</before></set>`, Request{Max: -1, Before: "b", Index: -1}, false},
		{`<set xmlns='http://jabber.org/protocol/rsm'><max>5</max><index>20</index></set>`, Request{Max: 5, Index: 20}, false},
		{`<set xmlns='http://jabber.org/protocol/rsm'><x xmlns='urn:ext'/><max>1</max></set>`, Request{Max: 1, Index: -1}, false},
		{`<set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set>`, None, true},
		{`<set xmlns='http://jabber.org/protocol/rsm'><max>x</max></set>`, None, true},
		{`<set xmlns='http://jabber.org/protocol/rsm'><after/></set>`, None, true},
		{`<set xmlns='http://jabber.org/protocol/rsm'><after>a</after><before>b</before></set>`, None, true},
		{`<set xmlns='http://jabber.org/protocol/rsm'><after>a</after><before/></set>`, None, true},
		{`<set xmlns='http://jabber.org/protocol/rsm'><index>1</index><after>a</after></set>`, None, true},
		{`<set xmlns='http://jabber.org/protocol/rsm'><first>a</first></set>`, None, true},
	}
	for _, c := range cases {
		set, err := element.Parse([]byte(c.in), "")
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(set)
		var se *stanza.Error
		switch {
		case c.bad && (!errors.As(err, &se) || se.Condition != stanza.BadRequest || se.Text == ""):
			t.Errorf("%s: %v, want bad-request with a text", c.in, err)
		case !c.bad && (err != nil || got != c.want):
			t.Errorf("%s: %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}
