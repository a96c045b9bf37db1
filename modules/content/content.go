// Package content applies the data loss prevention rules of
// [[content.rule]] to the messages local accounts send: each rule's
// matcher (an RE2 expression, a validated detector, or link domains and
// file extensions) reads the message's text, and a match blocks the
// message, flags its journal record for the officers' review, or writes an
// audit event.
//
// It registers the module "content", a module.Policy (listed in
// server/chain.go). End-to-end encrypted payloads cannot be read; the
// access rule encryption = "forbidden" keeps a group's messages readable.
package content

import (
	"context"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Namespaces whose elements carry text or links.
const (
	nsXHTMLIM   = "http://jabber.org/protocol/xhtml-im" // XEP-0071
	nsOOB       = "jabber:x:oob"                        // XEP-0066
	nsReference = "urn:xmpp:reference:0"                // XEP-0372
	nsURLData   = "http://jabber.org/protocol/url-data" // XEP-0103
)

func init() {
	module.Register(module.Info{Name: "content", New: func(h *module.Host, _ any) (any, error) {
		return New(h.Router, h.Audit, h.Config.Content.Rules), nil
	}})
}

// rule is a compiled [[content.rule]].
type rule struct {
	config.ContentRule
	re     *regexp.Regexp
	detect detector
	text   string // the refusal text
}

// Module is the content policy.
type Module struct {
	router module.Router
	audit  *zap.Logger
	rules  []rule
}

var _ module.Policy = (*Module)(nil)

// New compiles the rules (validated by config: a bad regex or detector
// name never reaches here).
func New(r module.Router, audit *zap.Logger, rules []config.ContentRule) *Module {
	m := &Module{router: r, audit: audit}
	for _, c := range rules {
		cr := rule{ContentRule: c, detect: detectors[c.Detector], text: c.Text}
		if c.Regex != "" {
			cr.re = regexp.MustCompile(c.Regex)
		}
		if cr.text == "" {
			cr.text = "this message matches the content rule " + c.Name + " and may not be sent"
		}
		m.rules = append(m.rules, cr)
	}
	return m
}

// Check applies the rules to a message a local account sends: the first
// block wins; every flag matched is added to st.Flags (the journal
// records them); log and flag matches are audited. Errors, stanzas from
// the server or from other domains, and other kinds pass.
func (m *Module) Check(_ context.Context, st *stanza.Stanza) *module.Denial {
	if len(m.rules) == 0 || st.Kind != stanza.Message || st.Type == "error" {
		return nil
	}
	from := st.From
	if from.Localpart() == "" || !m.router.IsLocal(from.Domainpart()) {
		return nil
	}
	dir := config.DirectionInternal
	if !m.router.IsLocal(st.To.Domainpart()) {
		dir = config.DirectionPartners
	}
	text, links := extract(st.El)
	if text == "" && len(links) == 0 {
		return nil
	}
	var groups []string
	groupsRead := false
	for i := range m.rules {
		r := &m.rules[i]
		if d := r.DirectionOf(); d != config.DirectionBoth && d != dir {
			continue
		}
		if len(r.Groups) > 0 {
			if !groupsRead {
				groups, groupsRead = m.router.Groups(from.Bare()), true
			}
			if !slices.ContainsFunc(r.Groups, func(g string) bool { return slices.Contains(groups, g) }) {
				continue
			}
		}
		what, ok := r.match(text, links)
		if !ok {
			continue
		}
		switch r.Action {
		case config.ContentBlock:
			return &module.Denial{
				Err:    stanza.Err(stanza.Modify, stanza.PolicyViolation, r.text),
				Reason: "content.rule " + r.Name + ": " + what,
			}
		case config.ContentFlag:
			if !slices.Contains(st.Flags, r.Name) {
				st.Flags = append(st.Flags, r.Name)
			}
			m.event("content_flagged", r, what, st, from)
		default:
			m.event("content_matched", r, what, st, from)
		}
	}
	return nil
}

// event audits a flag or log match; the matched text is never written.
func (m *Module) event(msg string, r *rule, what string, st *stanza.Stanza, from jid.JID) {
	if m.audit == nil {
		return
	}
	m.audit.Info(msg, zap.String("policy", "content"), zap.String("rule", r.Name), zap.String("matcher", what),
		zap.String("from", from.String()), zap.String("to", st.To.String()), zap.String("kind", "message"),
		zap.String("id", st.ID))
}

// match reports whether the rule's matcher finds something, and names the
// matcher for the audit reason.
func (r *rule) match(text string, links []*url.URL) (string, bool) {
	switch {
	case r.re != nil:
		return "regex", r.re.MatchString(text)
	case r.detect != nil:
		return r.Detector, r.detect(text)
	}
	for _, u := range links {
		host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
		for _, d := range r.URLDomains {
			if host == d || strings.HasSuffix(host, "."+d) {
				return "url_domains", true
			}
		}
		p := strings.ToLower(u.Path)
		for _, x := range r.URLExtensions {
			if strings.HasSuffix(p, strings.ToLower(x)) {
				return "url_extensions", true
			}
		}
	}
	return "", false
}

// extract returns the text a message shows its reader (bodies, subjects,
// XHTML-IM), one piece per line, and the links it carries, in that text
// and in XEP-0066, XEP-0372 and XEP-0103 elements.
func extract(msg *element.Element) (string, []*url.URL) {
	var b strings.Builder
	var links []*url.URL
	addLink := func(s string) {
		if u, err := url.Parse(strings.TrimSpace(s)); err == nil && u.Host != "" {
			links = append(links, u)
		}
	}
	for _, n := range msg.Nodes {
		c := n.El
		if c == nil {
			continue
		}
		switch {
		case c.Space == stanza.NSClient && (c.Local == "body" || c.Local == "subject"):
			b.WriteString(c.Text())
			b.WriteByte('\n')
		case c.Space == nsXHTMLIM && c.Local == "html":
			allText(&b, c)
			b.WriteByte('\n')
			hrefs(c, addLink)
		case c.Space == nsOOB && c.Local == "x":
			addLink(c.ChildText(nsOOB, "url"))
			b.WriteString(c.ChildText(nsOOB, "desc"))
			b.WriteByte('\n')
		case c.Space == nsReference && c.Local == "reference":
			addLink(c.Attr("uri"))
		case c.Space == nsURLData && c.Local == "url-data":
			addLink(c.Attr("target"))
		}
	}
	text := b.String()
	for _, w := range strings.FieldsFunc(text, func(r rune) bool {
		return r == ' ' || r == '\n' || r == '\t' || r == '<' || r == '>' || r == '"' || r == '\''
	}) {
		w = strings.TrimRight(w, ".,;:!?)]}")
		switch {
		case strings.Contains(w, "://"):
			addLink(w)
		case strings.HasPrefix(strings.ToLower(w), "www."):
			addLink("http://" + w)
		}
	}
	if strings.TrimSpace(text) == "" {
		text = ""
	}
	return text, links
}

// allText writes the character data of e and its descendants.
func allText(b *strings.Builder, e *element.Element) {
	for _, n := range e.Nodes {
		if n.El != nil {
			allText(b, n.El)
			b.WriteByte(' ')
		} else {
			b.WriteString(n.Text)
		}
	}
}

// hrefs calls f with the href and src attributes in an XHTML-IM body.
func hrefs(e *element.Element, f func(string)) {
	for _, n := range e.Nodes {
		if c := n.El; c != nil {
			for _, a := range []string{"href", "src"} {
				if v := c.Attr(a); v != "" {
					f(v)
				}
			}
			hrefs(c, f)
		}
	}
}
