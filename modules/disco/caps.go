package disco

import (
	"cmp"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/palisade-im/palisade/server/element"
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

// Info is what a disco#info result says about an entity, with its
// extended info forms (XEP-0128), which take part in the XEP-0115 hash.
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

// NSData is the XEP-0004 data forms namespace.
const NSData = "jabber:x:data"

// ParseInfo reads a disco#info <query/> result, including its extended
// info forms (XEP-0128). Following XEP-0115 section 5.4 it fails on what
// makes a verification string ambiguous: a duplicate identity or feature,
// a form with FORM_TYPE that is not hidden or has more than one value, or
// two forms with the same FORM_TYPE. Forms without a FORM_TYPE are
// ignored, as that section says.
func ParseInfo(q *element.Element) (Info, error) {
	var info Info
	if q == nil || q.Space != NSInfo || q.Local != "query" {
		return info, errors.New("disco: not a disco#info query")
	}
	seenID := map[Identity]bool{}
	seenFeat := map[string]bool{}
	seenForm := map[string]bool{}
	for _, el := range q.Elements() {
		switch {
		case el.Space == NSInfo && el.Local == "identity":
			id := Identity{Category: el.Attr("category"), Type: el.Attr("type"), Lang: el.Lang(), Name: el.Attr("name")}
			if seenID[id] {
				return info, fmt.Errorf("disco: duplicate identity %s/%s", id.Category, id.Type)
			}
			seenID[id] = true
			info.Identities = append(info.Identities, id)
		case el.Space == NSInfo && el.Local == "feature":
			f := el.Attr("var")
			if seenFeat[f] {
				return info, fmt.Errorf("disco: duplicate feature %q", f)
			}
			seenFeat[f] = true
			info.Features = append(info.Features, f)
		case el.Space == NSData && el.Local == "x":
			form, ok, err := parseForm(el)
			if err != nil {
				return info, err
			}
			if !ok {
				continue
			}
			if seenForm[form.FormType] {
				return info, fmt.Errorf("disco: two forms with FORM_TYPE %q", form.FormType)
			}
			seenForm[form.FormType] = true
			info.Forms = append(info.Forms, form)
		}
	}
	return info, nil
}

func parseForm(x *element.Element) (Form, bool, error) {
	var f Form
	found := false
	for _, fl := range x.Elements() {
		if fl.Space != NSData || fl.Local != "field" {
			continue
		}
		var vals []string
		for _, v := range fl.Elements() {
			if v.Space == NSData && v.Local == "value" {
				vals = append(vals, v.Text())
			}
		}
		if fl.Attr("var") == "FORM_TYPE" {
			if found || len(vals) != 1 || fl.Attr("type") != "hidden" {
				return f, false, errors.New("disco: a form's FORM_TYPE must be one hidden field with one value")
			}
			found = true
			f.FormType = vals[0]
			continue
		}
		f.Fields = append(f.Fields, Field{Var: fl.Attr("var"), Values: vals})
	}
	return f, found, nil
}

// VerifyVer reports whether ver is the XEP-0115 hash of info with the
// named algorithm (sha-1, sha-256 or sha-512; other names never verify).
func VerifyVer(info Info, hash, ver string) bool {
	var sum []byte
	s := []byte(VerString(info))
	switch hash {
	case "sha-1":
		h := sha1.Sum(s)
		sum = h[:]
	case "sha-256":
		h := sha256.Sum256(s)
		sum = h[:]
	case "sha-512":
		h := sha512.Sum512(s)
		sum = h[:]
	default:
		return false
	}
	return base64.StdEncoding.EncodeToString(sum) == ver
}
