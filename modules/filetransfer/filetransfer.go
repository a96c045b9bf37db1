// Package filetransfer enforces the file_transfer access right on every
// peer-to-peer file transfer path: XEP-0096 stream initiation (file
// transfer profile), XEP-0047 in-band bytestreams (IQ and message forms),
// XEP-0065 SOCKS5 bytestreams between users, XEP-0234 Jingle file transfer
// (and Jingle sessions on the IBB or SOCKS5 transports) and XEP-0066
// out-of-band data (jabber:x:oob in messages, jabber:iq:oob IQs).
//
// It registers the module "filetransfer", a module.Policy listed in
// server/chain.go after "blocking". The rule applies the rights of each
// party that is a local account ([[access.rule]], else [access] default):
//
//   - "none" refuses every transfer stanza to or from the account;
//   - "contacts" allows one only with a contact of the account: a roster
//     item with subscription "both", or a member of a shared-roster group
//     ([modules.roster] shared_groups) the account is in too;
//   - "all" (the default) allows it.
//
// A stanza from or to a server address (no localpart: the server itself,
// a SOCKS5 proxy, a component), or between resources of one account,
// passes. So do IQ errors. A refusal is policy-violation (cancel) with the
// same text whoever the parties are, so that refusals tell nothing of
// which accounts exist; the core audits it as policy "filetransfer" with
// a reason naming the rule.
//
// Off the transfer path the link costs one scan of the stanza's child
// elements; when no rule restricts file_transfer it returns at once.
package filetransfer

import (
	"context"
	"errors"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"mellium.im/xmpp/jid"
)

// Namespaces of the transfer protocols.
const (
	NSSI          = "http://jabber.org/protocol/si"                       // XEP-0095
	NSSIFile      = "http://jabber.org/protocol/si/profile/file-transfer" // XEP-0096
	NSIBB         = "http://jabber.org/protocol/ibb"                      // XEP-0047
	NSBytestreams = "http://jabber.org/protocol/bytestreams"              // XEP-0065
	NSJingle      = "urn:xmpp:jingle:1"                                   // XEP-0166
	NSJingleFT3   = "urn:xmpp:jingle:apps:file-transfer:3"                // XEP-0234 0.13-0.15
	NSJingleFT4   = "urn:xmpp:jingle:apps:file-transfer:4"                // XEP-0234 0.16-0.17
	NSJingleFT5   = "urn:xmpp:jingle:apps:file-transfer:5"                // XEP-0234 0.18+
	NSJingleIBB   = "urn:xmpp:jingle:transports:ibb:1"                    // XEP-0261
	NSJingleS5B   = "urn:xmpp:jingle:transports:s5b:1"                    // XEP-0260
	NSOOBX        = "jabber:x:oob"                                        // XEP-0066, in messages
	NSOOBIQ       = "jabber:iq:oob"                                       // XEP-0066, IQ form
)

// Kinds of transfer stanza Recognise reports; they name the protocol in
// audit reasons.
const (
	KindSI          = "si"
	KindIBB         = "ibb"
	KindBytestreams = "bytestreams"
	KindJingle      = "jingle"
	KindOOB         = "oob"
)

// Text is the refusal's text, the same for every refusal.
const Text = "file transfer is not allowed between these parties"

// Recognise reports which transfer protocol st belongs to, "" when it is
// no transfer stanza. It looks only at st's own child elements (and, for
// Jingle, at the contents' description and transport), allocating nothing.
func Recognise(st *stanza.Stanza) string {
	switch st.Kind {
	case stanza.Message:
		for _, n := range st.El.Nodes {
			if c := n.El; c != nil {
				switch {
				case c.Space == NSOOBX && c.Local == "x":
					return KindOOB
				case c.Space == NSIBB && c.Local == "data":
					return KindIBB
				}
			}
		}
	case stanza.IQ:
		if st.Type == "error" {
			return ""
		}
		for _, n := range st.El.Nodes {
			if c := n.El; c != nil {
				if k := iqPayload(st.Type, c); k != "" {
					return k
				}
			}
		}
	}
	return ""
}

// iqPayload recognises one child element of an IQ of type typ.
func iqPayload(typ string, c *element.Element) string {
	switch c.Space {
	case NSSI:
		// An offer names the profile; the answer (XEP-0095 section 3)
		// carries only the chosen stream method.
		if c.Local == "si" && (typ == "result" || c.Attr("profile") == NSSIFile || c.Child(NSSIFile, "file") != nil) {
			return KindSI
		}
	case NSIBB:
		switch c.Local {
		case "open", "data", "close":
			return KindIBB
		}
	case NSBytestreams:
		if c.Local == "query" {
			return KindBytestreams
		}
	case NSJingle:
		if c.Local == "jingle" && jingleTransfer(c) {
			return KindJingle
		}
	case NSOOBIQ:
		if c.Local == "query" {
			return KindOOB
		}
	}
	return ""
}

// jingleTransfer reports whether a <jingle/> element describes a file
// transfer: a content whose description is XEP-0234's or whose transport
// is in-band or SOCKS5 bytestreams, or an XEP-0234 element (checksum,
// received) in a session-info.
func jingleTransfer(j *element.Element) bool {
	for _, n := range j.Nodes {
		c := n.El
		if c == nil {
			continue
		}
		if isFT(c.Space) {
			return true
		}
		if c.Local != "content" || c.Space != NSJingle {
			continue
		}
		for _, m := range c.Nodes {
			if d := m.El; d != nil {
				switch {
				case d.Local == "description" && isFT(d.Space):
					return true
				case d.Local == "transport" && (d.Space == NSJingleIBB || d.Space == NSJingleS5B):
					return true
				}
			}
		}
	}
	return false
}

func isFT(space string) bool {
	return space == NSJingleFT5 || space == NSJingleFT4 || space == NSJingleFT3
}

// Module is the file-transfer policy.
type Module struct {
	router     module.Router
	rosters    storage.Rosters
	restricted bool // some rule restricts file_transfer

	shared *module.SharedGroups
}

var _ module.Policy = (*Module)(nil)

func init() {
	module.Register(module.Info{Name: "filetransfer", New: func(h *module.Host, _ any) (any, error) {
		if h.Router == nil || h.Store == nil {
			return nil, errors.New("filetransfer: the host needs a router and a store")
		}
		var access config.Access
		if h.Config != nil {
			access = h.Config.Access
		}
		return New(h.Router, h.Store, access, h.Modules), nil
	}})
}

// New builds the policy. access is the configuration's [access] (only
// whether some rule restricts file_transfer is read from it: the rights
// themselves are asked of r at each stanza); rosters answers "contacts";
// modules lists the host's modules, where the SharedRoster is looked for
// on first use (nil: none).
func New(r module.Router, rosters storage.Rosters, access config.Access, modules func() []any) *Module {
	return &Module{router: r, rosters: rosters, restricted: Restricted(access), shared: module.NewSharedGroups(r, modules)}
}

// Restricted reports whether the default or any rule of access has a
// file_transfer other than "all". Without one the policy looks nothing up.
func Restricted(a config.Access) bool {
	if a.Default.FileTransferScope() != config.FileTransferAll {
		return true
	}
	for _, r := range a.Rules {
		if r.Rights.FileTransferScope() != config.FileTransferAll {
			return true
		}
	}
	return false
}

// Check implements module.Policy.
func (m *Module) Check(ctx context.Context, st *stanza.Stanza) *module.Denial {
	from, to := st.From, st.To
	remote := ""
	switch {
	case to.Domainpart() != "" && !m.router.IsLocal(to.Domainpart()):
		remote = to.Domainpart()
	case from.Domainpart() != "" && !m.router.IsLocal(from.Domainpart()):
		remote = from.Domainpart()
	}
	if !m.restricted && remote == "" {
		return nil
	}
	kind := Recognise(st)
	if kind == "" {
		return nil
	}
	if remote != "" {
		// Files with another organisation: its partner entry decides
		// (files = true), then the local party's rights.
		if p := module.PartnerOf(m.router, remote); p == nil || !p.Files {
			return &module.Denial{Err: stanza.Err(stanza.Cancel, stanza.PolicyViolation, "file transfer with "+remote+" is not allowed"),
				Reason: "partner of " + remote + ": files = false (" + kind + ")"}
		}
		if !m.restricted {
			return nil
		}
	}
	if from.Localpart() == "" || to.Localpart() == "" || from.Bare().Equal(to.Bare()) {
		return nil
	}
	if d := m.side(ctx, kind, from, to, "sender"); d != nil {
		return d
	}
	return m.side(ctx, kind, to, from, "recipient")
}

// side applies the rights of account, when it is local, to a transfer
// with peer; role names it in the reason.
func (m *Module) side(ctx context.Context, kind string, account, peer jid.JID, role string) *module.Denial {
	if !m.router.IsLocal(account.Domainpart()) {
		return nil
	}
	r, rule := m.rights(account.Bare())
	switch scope := r.FileTransferScope(); scope {
	case config.FileTransferNone:
		return deny(rule + ": file_transfer = none (" + role + ", " + kind + ")")
	case config.FileTransferContacts:
		ok, err := m.contacts(ctx, account.Bare(), peer.Bare())
		if err != nil {
			return &module.Denial{
				Err:    stanza.Err(stanza.Wait, stanza.InternalServerError, "file transfer rights could not be checked"),
				Reason: rule + ": file_transfer = contacts (" + role + ", " + kind + "): " + err.Error(),
			}
		}
		if !ok {
			return deny(rule + ": file_transfer = contacts (" + role + ", " + kind + "): not a contact")
		}
	case config.FileTransferAll:
	default:
		// validate.go refuses other values; should one get here, refuse.
		return deny(rule + ": file_transfer = " + scope + " (" + role + ", " + kind + ")")
	}
	return nil
}

func deny(reason string) *module.Denial {
	return &module.Denial{Err: stanza.Err(stanza.Cancel, stanza.PolicyViolation, Text), Reason: reason}
}

// rights returns the account's rights and the rule's name.
func (m *Module) rights(bare jid.JID) (config.Rights, string) {
	return module.AccountRule(m.router, bare)
}

// contacts reports whether peer is a contact of account for "contacts":
// an item with subscription both in account's roster, or a shared-roster
// group both are in.
func (m *Module) contacts(ctx context.Context, account, peer jid.JID) (bool, error) {
	it, err := m.rosters.Item(ctx, account.String(), peer.String())
	switch {
	case err == nil && it.Subscription == storage.SubBoth:
		return true, nil
	case err != nil && !errors.Is(err, storage.ErrNotFound):
		return false, err
	}
	return m.shared.Share(account, peer), nil
}
