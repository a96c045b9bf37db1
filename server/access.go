package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/palisade-im/palisade/server/config"
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
	var from config.Rights
	fromRule := -1
	fromAccount := s.isAccount(st.From)
	if fromAccount {
		from, fromRule = s.Rights(st.From.Bare())
		if d := st.To.Domainpart(); !from.MayFederate() && d != "" && !s.IsLocal(d) {
			return &module.Denial{
				Err:    stanza.Err(stanza.Cancel, stanza.PolicyViolation, "this account may not communicate with other domains"),
				Reason: ruleName(fromRule) + ": federate = false",
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
	why := encryptedOnly(st.El) // encryption.go
	if why == nil {
		return nil
	}
	if fromAccount && from.EncryptionRequired {
		return &module.Denial{
			Err:    stanza.Err(stanza.Modify, stanza.PolicyViolation, "this account must encrypt messages end to end (OMEMO or OpenPGP): "+why.Error()),
			Reason: ruleName(fromRule) + ": encryption_required (sender): " + why.Error(),
		}
	}
	if s.isAccount(st.To) {
		if to, rule := s.Rights(st.To.Bare()); to.EncryptionRequired {
			return &module.Denial{
				Err:    stanza.Err(stanza.Modify, stanza.PolicyViolation, "the recipient accepts only end-to-end encrypted messages (OMEMO or OpenPGP): "+why.Error()),
				Reason: ruleName(rule) + ": encryption_required (recipient): " + why.Error(),
			}
		}
	}
	return nil
}

// Namespaces of end-to-end encrypted message payloads.
const (
	nsOMEMOLegacy = "eu.siacs.conversations.axolotl" // XEP-0384 before 0.4, <encrypted/>
	nsOMEMO2      = "urn:xmpp:omemo:2"               // XEP-0384 0.8+, <encrypted/>
	nsOpenPGP     = "urn:xmpp:openpgp:0"             // XEP-0373, <openpgp/>
	nsLegacyPGP   = "jabber:x:encrypted"             // XEP-0027, <x/>
)

// stanzaRightsOf reports whether the default or any rule restricts what
// accounts may send (send, federate) and whether any requires end-to-end
// encryption. Without either, checkRights looks nothing up.
func stanzaRightsOf(a config.Access) (restricted, encryption bool) {
	all := make([]config.Rights, 0, 1+len(a.Rules))
	all = append(all, a.Default)
	for _, r := range a.Rules {
		all = append(all, r.Rights)
	}
	for _, r := range all {
		encryption = encryption || r.EncryptionRequired
		restricted = restricted || r.EncryptionRequired || !r.MaySend() || !r.MayFederate()
	}
	return restricted, encryption
}
