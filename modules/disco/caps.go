package disco

import (
	"cmp"
	"crypto/sha1"
	"encoding/base64"
	"slices"
	"strings"
)

// Identity is a disco#info identity (XEP-0030 section 3.1).
type Identity struct {
	Category, Type, Lang, Name string
}

// Field is one field of an extended info form (XEP-0128) as far as
// XEP-0115 hashing needs it.
type Field struct {
	Var    string
	Values []string
}

// Form is an extended service discovery info form (XEP-0128): its
// FORM_TYPE and its other fields.
type Form struct {
	FormType string
	Fields   []Field
}

// Info is what a disco#info result says about an entity. Forms take part
// in the XEP-0115 hash only; Element does not render them (the server
// publishes none).
type Info struct {
	Identities []Identity
	Features   []string
	Forms      []Form
}

// VerString returns the XEP-0115 section 5.1 verification string S for
// info (before hashing). It does not modify info.
func VerString(info Info) string {
	var b strings.Builder
	ids := slices.Clone(info.Identities)
	slices.SortFunc(ids, func(a, b Identity) int {
		return cmp.Or(
			strings.Compare(a.Category, b.Category),
			strings.Compare(a.Type, b.Type),
			strings.Compare(a.Lang, b.Lang),
			strings.Compare(a.Name, b.Name),
		)
	})
	for _, id := range ids {
		b.WriteString(id.Category)
		b.WriteByte('/')
		b.WriteString(id.Type)
		b.WriteByte('/')
		b.WriteString(id.Lang)
		b.WriteByte('/')
		b.WriteString(id.Name)
		b.WriteByte('<')
	}
	feats := slices.Clone(info.Features)
	slices.Sort(feats)
	for _, f := range feats {
		b.WriteString(f)
		b.WriteByte('<')
	}
	forms := slices.Clone(info.Forms)
	slices.SortFunc(forms, func(a, b Form) int { return strings.Compare(a.FormType, b.FormType) })
	for _, f := range forms {
		b.WriteString(f.FormType)
		b.WriteByte('<')
		fields := slices.Clone(f.Fields)
		slices.SortFunc(fields, func(a, b Field) int { return strings.Compare(a.Var, b.Var) })
		for _, fl := range fields {
			if fl.Var == "FORM_TYPE" {
				continue
			}
			b.WriteString(fl.Var)
			b.WriteByte('<')
			vals := slices.Clone(fl.Values)
			slices.Sort(vals)
			for _, v := range vals {
				b.WriteString(v)
				b.WriteByte('<')
			}
		}
	}
	return b.String()
}

// Ver returns the XEP-0115 'ver' attribute for info: the Base64 encoding
// of the SHA-1 hash of VerString (XEP-0115 section 5.1).
func Ver(info Info) string {
	sum := sha1.Sum([]byte(VerString(info)))
	return base64.StdEncoding.EncodeToString(sum[:])
}
