package adhoc

import (
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
)

// Fields are the values of a submitted data form, by var.
type Fields map[string][]string

// readForm reads a submitted XEP-0004 form whose FORM_TYPE, when given, is
// NSAdmin. It returns nil fields for a form of type cancel.
func readForm(x *element.Element) (Fields, error) {
	switch x.Attr("type") {
	case "submit":
	case "cancel":
		return nil, nil
	default:
		return nil, cmdErr(stanza.Modify, stanza.BadRequest, "bad-payload", "the form must be of type submit")
	}
	f := Fields{}
	for _, el := range x.Elements() {
		if el.Space != NSData || el.Local != "field" {
			continue
		}
		name := el.Attr("var")
		if name == "" {
			return nil, cmdErr(stanza.Modify, stanza.BadRequest, "bad-payload", "a form field without var")
		}
		if _, dup := f[name]; dup {
			return nil, cmdErr(stanza.Modify, stanza.BadRequest, "bad-payload", "field "+name+" given twice")
		}
		vals := []string{}
		for _, v := range el.Elements() {
			if v.Space == NSData && v.Local == "value" {
				vals = append(vals, v.Text())
			}
		}
		f[name] = vals
	}
	if ft, ok := f["FORM_TYPE"]; ok && (len(ft) != 1 || ft[0] != NSAdmin) {
		return nil, cmdErr(stanza.Modify, stanza.BadRequest, "bad-payload", "FORM_TYPE must be "+NSAdmin)
	}
	return f, nil
}

// field builds a form field.
func field(typ, name, label string, required bool, values ...string) *element.Element {
	el := element.New(NSData, "field", element.A("type", typ), element.A("var", name))
	if label != "" {
		el.SetAttr("label", label)
	}
	if required {
		el.Append(element.New(NSData, "required"))
	}
	for _, v := range values {
		el.Append(element.New(NSData, "value").SetText(v))
	}
	return el
}
