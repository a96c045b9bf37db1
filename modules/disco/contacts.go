package disco

import (
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
)

// NSServerInfo is the FORM_TYPE of XEP-0157 contact addresses.
const NSServerInfo = "http://jabber.org/network/serverinfo"

// nsData is the XEP-0004 data forms namespace.
const nsData = "jabber:x:data"

// ContactForm returns the XEP-0157 serverinfo form of [server.contacts],
// and false when no address is configured (the form is then left out).
func ContactForm(c config.Contacts) (Form, bool) {
	f := Form{FormType: NSServerInfo}
	set := false
	for _, r := range c.Roles() {
		if len(r.URIs) > 0 {
			set = true
		}
		// XEP-0157 section 4 lists every field, empty or not.
		f.Fields = append(f.Fields, Field{Var: r.Field, Values: append([]string(nil), r.URIs...)})
	}
	return f, set
}

// element renders f as a XEP-0128 result form.
func (f Form) element() *element.Element {
	x := element.New(nsData, "x", element.A("type", "result"))
	x.Append(element.New(nsData, "field", element.A("var", "FORM_TYPE"), element.A("type", "hidden")).
		Append(element.New(nsData, "value").SetText(f.FormType)))
	for _, fl := range f.Fields {
		el := element.New(nsData, "field", element.A("var", fl.Var))
		for _, v := range fl.Values {
			el.Append(element.New(nsData, "value").SetText(v))
		}
		x.Append(el)
	}
	return x
}
