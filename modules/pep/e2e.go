package pep

import (
	"strings"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// e2eNodePrefixes are the PEP nodes through which clients find each
// other's end-to-end keys: OMEMO (legacy eu.siacs.conversations.axolotl
// and XEP-0384's urn:xmpp:omemo:2) device lists and bundles, and XEP-0373
// public keys, key lists and secret-key backups.
var e2eNodePrefixes = [...]string{
	"eu.siacs.conversations.axolotl.",
	"urn:xmpp:omemo:",
	"urn:xmpp:openpgp:0:",
}

// e2eNode reports whether node holds end-to-end keys.
func e2eNode(node string) bool {
	for _, p := range e2eNodePrefixes {
		if strings.HasPrefix(node, p) {
			return true
		}
	}
	return false
}

// e2eForbidden refuses a publish to an end-to-end key node by an account
// whose rule says encryption = "forbidden": without published keys no
// client can start an encrypted session with it, so its messages stay
// readable to the content rules. The refusal is policy-violation
// (cancel), audited as a policy denial.
func (m *Module) e2eForbidden(owner, from jid.JID, node string) *stanza.Error {
	if !e2eNode(node) {
		return nil
	}
	r, rule := module.AccountRule(m.router, owner)
	if r.EncryptionPolicy() != config.EncryptionForbidden {
		return nil
	}
	if m.audit != nil {
		m.audit.Info("policy_denied", zap.String("policy", "access"),
			zap.String("reason", rule+": encryption = forbidden (pep publish of end-to-end keys)"),
			zap.String("from", from.String()), zap.String("to", owner.String()), zap.String("kind", "iq"),
			zap.String("node", node))
	}
	return stanza.Err(stanza.Cancel, stanza.PolicyViolation, "end-to-end encryption is forbidden for this account: it may not publish encryption keys")
}

// NSEncryptionFeature prefixes the disco#info feature of an account that
// names its end-to-end policy: urn:palisade:encryption:required,
// :allowed or :forbidden, so that its clients can tell before they try.
const NSEncryptionFeature = "urn:palisade:encryption:"

// AccountFeaturesFor returns the feature naming the end-to-end policy in
// effect for account (modules/disco adds it to the account's disco#info).
func (m *Module) AccountFeaturesFor(account jid.JID) []string {
	r, _ := module.AccountRule(m.router, account.Bare())
	return []string{NSEncryptionFeature + r.EncryptionPolicy()}
}
