package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/sasl"
	"github.com/palisade-im/palisade/server/stanza"
	"mellium.im/xmpp/jid"
)

// groupsOf unites what every GroupSource says of an account.
func (s *Server) groupsOf(bare jid.JID) []string {
	var out []string
	for _, g := range s.groupSrc {
		for _, name := range g.Groups(bare) {
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// Groups implements module.Router: the account's groups, united from every
// GroupSource.
func (s *Server) Groups(bare jid.JID) []string { return s.groupsOf(bare) }

// GroupMembers implements module.Router.
func (s *Server) GroupMembers(ctx context.Context, group string) ([]jid.JID, error) {
	var out []jid.JID
	known := false
	for _, g := range s.groupSrc {
		l, ok := g.(module.GroupLister)
		if !ok {
			continue
		}
		ms, ok, err := l.Members(ctx, group)
		if err != nil {
			return nil, fmt.Errorf("members of group %s: %w", group, err)
		}
		if !ok {
			continue
		}
		known = true
		for _, m := range ms {
			if !slices.ContainsFunc(out, m.Equal) {
				out = append(out, m)
			}
		}
	}
	if !known {
		return nil, fmt.Errorf("members of group %s: no group source lists it", group)
	}
	slices.SortFunc(out, func(a, b jid.JID) int { return strings.Compare(a.String(), b.String()) })
	return out, nil
}

// Rights returns the rights of an account: those of the first
// [[access.rule]] whose jid or group matches it, else [access] default.
// rule is the index of that rule, -1 for the default.
func (s *Server) Rights(bare jid.JID) (r config.Rights, rule int) {
	var groups []string
	looked := false
	local, domain := bare.Localpart(), bare.Domainpart()
	for i, rl := range s.cfg.Access.Rules {
		if rl.JID != "" {
			if isBare(rl.JID, local, domain) {
				return rl.Rights, i
			}
			continue
		}
		if !looked {
			groups, looked = s.groupsOf(bare), true
		}
		if slices.Contains(groups, rl.Group) {
			return rl.Rights, i
		}
	}
	return s.cfg.Access.Default, -1
}

// isBare reports whether s is the bare JID local@domain, without building
// that string (Rights runs for every stanza an account sends).
func isBare(s, local, domain string) bool {
	return len(s) == len(local)+1+len(domain) && s[:len(local)] == local && s[len(local)] == '@' && s[len(local)+1:] == domain
}

// authorizeLogin applies the access rights to a login from remote and
// returns them.
func (s *Server) authorizeLogin(_ context.Context, bare jid.JID, remote string) (config.Rights, error) {
	r, rule := s.Rights(bare)
	which := ruleName(rule)
	if !r.MayLogin() {
		return config.Rights{}, &sasl.Failure{Condition: sasl.NotAuthorized, Err: fmt.Errorf("%s: login not allowed", which)}
	}
	if len(r.Networks) > 0 {
		host, _, err := net.SplitHostPort(remote)
		if err != nil {
			host = remote
		}
		ip := net.ParseIP(host)
		allowed := false
		for _, n := range r.Networks {
			if _, cidr, err := net.ParseCIDR(n); err == nil && ip != nil && cidr.Contains(ip) {
				allowed = true
				break
			}
		}
		if !allowed {
			return config.Rights{}, &sasl.Failure{Condition: sasl.NotAuthorized, Err: fmt.Errorf("%s: login from %s is outside the allowed networks", which, host)}
		}
	}
	return r, nil
}

// AccountRights returns the rights of an account (module.Router), as
// Rights does, evaluated now from its current groups.
func (s *Server) AccountRights(bare jid.JID) config.Rights {
	r, _ := s.Rights(bare.Bare())
	return r
}

// AccountRule returns the rights of an account, as AccountRights does,
// and the name of the rule they come from ("access.rule 2",
// "access.default"), for the audit reasons of the modules that enforce
// rights; they reach it through module.AccountRule.
func (s *Server) AccountRule(bare jid.JID) (config.Rights, string) {
	r, rule := s.Rights(bare.Bare())
	return r, ruleName(rule)
}

// ruleName names the rule Rights matched, for errors and audit events.
func ruleName(rule int) string {
	if rule < 0 {
		return "access.default"
	}
	return "access.rule " + strconv.Itoa(rule+1)
}

// isAccount reports whether j is (a resource of) a local account.
func (s *Server) isAccount(j jid.JID) bool {
	return j.Localpart() != "" && s.IsLocal(j.Domainpart())
}

// checkRights is the first link of the policy chain: it applies the
// access rights of the sending account (send, federate,
// encryption_required) and, for encryption_required, those of a local
// recipient. Rights are evaluated now, so a group change applies to the
// next stanza. Stanzas from the server itself pass.
//
// Every refusal is <policy-violation/> (RFC 6120 8.3.3.12: a local
// service policy). Its type follows RFC 6120 8.3.2: cancel when sending
// again cannot help (a read-only account, no federation), modify when
// the sender can fix the stanza (encrypt it end to end).
func (s *Server) checkRights(st *stanza.Stanza) *module.Denial {
	if !s.stanzaRights {
		return nil
	}
	fromAccount, from, fromRule := s.senderRights(st)
	if den := s.federateOf(st, fromAccount, from, fromRule); den != nil {
		return den
	}
	if fromAccount && !from.MaySend() {
		switch st.Kind {
		case stanza.Presence:
			stripPresenceText(st)
		case stanza.IQ:
			if !s.readOnlyIQPasses(st) {
				return &module.Denial{
					Err:    stanza.Err(stanza.Cancel, stanza.PolicyViolation, "this account is read-only: it may not send content to others"),
					Reason: ruleName(fromRule) + ": send = false (iq)",
				}
			}
		}
	}
	if st.Kind != stanza.Message {
		return nil
	}
	if fromAccount && !from.MaySend() {
		return &module.Denial{
			Err:    stanza.Err(stanza.Cancel, stanza.PolicyViolation, "this account is read-only: it may not send messages"),
			Reason: ruleName(fromRule) + ": send = false",
		}
	}
	if !s.encryptionRules {
		return nil
	}
	return s.checkEncryption(st, fromAccount, from, fromRule)
}

// checkEncryption applies the end-to-end policies (encryption) of the
// sending account and of a local recipient to a message: "forbidden"
// refuses an OMEMO or OpenPGP payload, "required" anything but
// well-formed payloads (encryptedOnly in encryption.go). The recipient's
// rights are looked up only for a message one of them can refuse.
func (s *Server) checkEncryption(st *stanza.Stanza, fromAccount bool, from config.Rights, fromRule int) *module.Denial {
	payload := e2ePayload(st.El)
	why := encryptedOnly(st.El)
	if payload == "" && why == nil {
		return nil
	}
	policy := from.EncryptionPolicy()
	switch {
	case !fromAccount:
	case payload != "" && policy == config.EncryptionForbidden:
		return &module.Denial{
			Err:    stanza.Err(stanza.Modify, stanza.PolicyViolation, "end-to-end encryption is forbidden for this account: its messages must stay readable to the content rules ("+payload+" payload)"),
			Reason: ruleName(fromRule) + ": encryption = forbidden (sender): " + payload + " payload",
		}
	case why != nil && policy == config.EncryptionRequired:
		return &module.Denial{
			Err:    stanza.Err(stanza.Modify, stanza.PolicyViolation, "this account must encrypt messages end to end (OMEMO or OpenPGP): "+why.Error()),
			Reason: ruleName(fromRule) + ": encryption_required (sender): " + why.Error(),
		}
	}
	if !s.isAccount(st.To) {
		return nil
	}
	to, rule := s.Rights(st.To.Bare())
	switch policy := to.EncryptionPolicy(); {
	case payload != "" && policy == config.EncryptionForbidden:
		return &module.Denial{
			Err:    stanza.Err(stanza.Modify, stanza.PolicyViolation, "the recipient may not receive end-to-end encrypted messages: its messages must stay readable to the content rules ("+payload+" payload)"),
			Reason: ruleName(rule) + ": encryption = forbidden (recipient): " + payload + " payload",
		}
	case why != nil && policy == config.EncryptionRequired:
		return &module.Denial{
			Err:    stanza.Err(stanza.Modify, stanza.PolicyViolation, "the recipient accepts only end-to-end encrypted messages (OMEMO or OpenPGP): "+why.Error()),
			Reason: ruleName(rule) + ": encryption_required (recipient): " + why.Error(),
		}
	}
	return nil
}

// checkFederate applies only the federate rights to st, as checkRights
// does: for the stanzas that reach a partner stream without crossing the
// policy chain (presence broadcast copies, in routeRemote), so that a
// group change applies to them at once too.
func (s *Server) checkFederate(st *stanza.Stanza) *module.Denial {
	if !s.stanzaRights {
		return nil
	}
	fromAccount, from, fromRule := s.senderRights(st)
	return s.federateOf(st, fromAccount, from, fromRule)
}

// senderRights returns whether st comes from a local account, and if so
// its rights and rule (-1 otherwise).
func (s *Server) senderRights(st *stanza.Stanza) (fromAccount bool, from config.Rights, fromRule int) {
	fromRule = -1
	if fromAccount = s.isAccount(st.From); fromAccount {
		from, fromRule = s.Rights(st.From.Bare())
	}
	return fromAccount, from, fromRule
}

// federateOf applies the federate rights to st: the sender's (from, of
// rule fromRule, when fromAccount) to a stanza for another domain, the
// recipient's to a stanza from another domain to a local account. The
// recipient's are looked up the same way whether the account exists or
// not, so a refusal tells nothing of it.
func (s *Server) federateOf(st *stanza.Stanza, fromAccount bool, from config.Rights, fromRule int) *module.Denial {
	if fromAccount {
		if d := st.To.Domainpart(); d != "" && !s.IsLocal(d) {
			return s.federateDenial(from, fromRule, d, "to")
		}
		return nil
	}
	if d := st.From.Domainpart(); d != "" && !s.IsLocal(d) && s.isAccount(st.To) {
		to, rule := s.Rights(st.To.Bare())
		return s.federateDenial(to, rule, d, "from")
	}
	return nil
}

// federateDenial applies an account's federate right r (from rule) to a
// stanza exchanged with the other domain d; dir ("to" or "from") says
// whether the account sends it or would receive it. false refuses every
// other domain; a partner list refuses the partners it leaves out. A
// domain no partner names passes here: the federation gate refuses it
// ("not a partner", policy "federation").
func (s *Server) federateDenial(r config.Rights, rule int, d, dir string) *module.Denial {
	if !r.Federate.Only {
		return nil
	}
	if !r.MayFederate() {
		if dir == "to" {
			return &module.Denial{
				Err:    stanza.Err(stanza.Cancel, stanza.PolicyViolation, "this account may not communicate with other domains"),
				Reason: ruleName(rule) + ": federate = false",
			}
		}
		return &module.Denial{
			Err:    stanza.Err(stanza.Cancel, stanza.PolicyViolation, "this account may not communicate with "+d),
			Reason: ruleName(rule) + ": federate = false (recipient, from " + d + ")",
		}
	}
	p := s.partnerFor(d)
	if p == nil || r.MayFederateWith(p.Name) {
		return nil
	}
	who := "sender"
	if dir == "from" {
		who = "recipient"
	}
	return &module.Denial{
		Err:    stanza.Err(stanza.Cancel, stanza.PolicyViolation, "this account may not communicate with "+d),
		Reason: ruleName(rule) + ": federate = " + r.Federate.String() + " (" + who + ") excludes partner " + p.Name + " (" + d + ")",
	}
}

// Read-only accounts (send = false) on the other channels than messages.
// No user content reaches anyone from such an account:
//
//   - an IQ get or set to another party (not the account itself, not a
//     served domain) is refused unless it is a get whose payload is
//     content-free (contentFreeIQ), or a get to another local account's
//     bare JID, which the server answers (reading a vCard or PEP items
//     sends nothing); a result to another party passes only
//     empty or with such a payload, errors pass: the account's client
//     still answers discovery, caps and pings;
//   - presence (broadcast, directed, subscription stanzas) passes with its
//     <status/> and XEP-0172 <nick/> removed, unaudited: availability,
//     show and priority are no content. The text is removed as the client
//     sends it (clientHygiene calls stripReadOnlyPresence), so the stored
//     presence that answers probes carries none either, and again in
//     checkRights for every copy the presence module routes;
//   - PEP publishes to nodes others can read, and vCard changes, are
//     refused by modules/pep and modules/vcard, which know the node's
//     access model and the vCard.

// contentFreeIQ lists the IQ payloads (namespace and element) a read-only
// account may ask others for, and answer with: they carry no user text.
var contentFreeIQ = map[[2]string]bool{
	{"http://jabber.org/protocol/disco#info", "query"}:  true, // XEP-0030
	{"http://jabber.org/protocol/disco#items", "query"}: true, // XEP-0030
	{"urn:xmpp:ping", "ping"}:                           true, // XEP-0199
	{"urn:xmpp:time", "time"}:                           true, // XEP-0202
	{"jabber:iq:version", "query"}:                      true, // XEP-0092
	{"jabber:iq:last", "query"}:                         true, // XEP-0012
}

// readOnlyIQPasses reports whether a read-only account's IQ st may pass.
func (s *Server) readOnlyIQPasses(st *stanza.Stanza) bool {
	to := st.To
	if to.Localpart() == "" && s.IsLocal(to.Domainpart()) {
		return true // the server's own services
	}
	if to.Bare().Equal(st.From.Bare()) {
		return true // the account's own services and resources
	}
	if st.Type == "get" && to.Resourcepart() == "" && s.isAccount(to) {
		// Answered by the server on that account's behalf (its vCard,
		// PEP items, disco): reading carries nothing of the sender's.
		return true
	}
	switch st.Type {
	case "error":
		return true
	case "get", "result":
		// A get has one payload (clientHygiene); a result may be empty.
		for _, n := range st.El.Nodes {
			if c := n.El; c != nil && !contentFreeIQ[[2]string{c.Space, c.Local}] {
				return false
			}
		}
		return true
	}
	return false // set
}

// nsNick is XEP-0172 user nickname.
const nsNick = "http://jabber.org/protocol/nick"

// stripPresenceText removes <status/> and XEP-0172 <nick/> from a
// presence. The stanza's children may be shared with another copy
// (ShallowCopy), so a new list is built rather than editing in place.
func stripPresenceText(st *stanza.Stanza) {
	text := func(c *element.Element) bool {
		return c != nil && ((c.Space == stanza.NSClient && c.Local == "status") || (c.Space == nsNick && c.Local == "nick"))
	}
	if !slices.ContainsFunc(st.El.Nodes, func(n element.Node) bool { return text(n.El) }) {
		return
	}
	nodes := make([]element.Node, 0, len(st.El.Nodes))
	for _, n := range st.El.Nodes {
		if !text(n.El) {
			nodes = append(nodes, n)
		}
	}
	st.El.Nodes = nodes
	st.Changed()
}

// stripReadOnlyPresence removes the text of a presence that a read-only
// account's client sent, before the session stores it as its presence.
func (s *Server) stripReadOnlyPresence(st *stanza.Stanza) {
	if !s.stanzaRights || st.Kind != stanza.Presence || !s.isAccount(st.From) {
		return
	}
	if r, _ := s.Rights(st.From.Bare()); !r.MaySend() {
		stripPresenceText(st)
	}
}

// Namespaces of end-to-end encrypted message payloads.
const (
	nsOMEMOLegacy = "eu.siacs.conversations.axolotl" // XEP-0384 before 0.4, <encrypted/>
	nsOMEMO2      = "urn:xmpp:omemo:2"               // XEP-0384 0.8+, <encrypted/>
	nsOpenPGP     = "urn:xmpp:openpgp:0"             // XEP-0373, <openpgp/>
	nsLegacyPGP   = "jabber:x:encrypted"             // XEP-0027, <x/>
)

// stanzaRightsOf reports whether the default or any rule restricts what
// accounts may send or receive (send, federate false or a partner list)
// and whether any requires end-to-end encryption. Without either,
// checkRights looks nothing up.
func stanzaRightsOf(a config.Access) (restricted, encryption bool) {
	all := make([]config.Rights, 0, 1+len(a.Rules))
	all = append(all, a.Default)
	for _, r := range a.Rules {
		all = append(all, r.Rights)
	}
	for _, r := range all {
		e2e := r.EncryptionPolicy() != config.EncryptionAllowed
		encryption = encryption || e2e
		restricted = restricted || e2e || !r.MaySend() || r.Federate.Only
	}
	return restricted, encryption
}
