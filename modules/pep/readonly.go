package pep

import (
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// readOnly refuses a publish by a read-only account (send = false) to a
// node that others can read: every access model but whitelist (XEP-0223
// private storage, bookmarks), whose items reach only the owner. cfg is
// the node's configuration as it will be after the publish. The refusal is
// policy-violation (cancel), audited as a policy denial.
func (m *Module) readOnly(owner, from jid.JID, node string, cfg storage.NodeConfig) *stanza.Error {
	if cfg.AccessModel == storage.AccessWhitelist {
		return nil
	}
	r, rule := module.AccountRule(m.router, owner)
	if r.MaySend() {
		return nil
	}
	if m.audit != nil {
		m.audit.Info("policy_denied", zap.String("policy", "access"),
			zap.String("reason", rule+": send = false (pep publish, access model "+cfg.AccessModel+")"),
			zap.String("from", from.String()), zap.String("to", owner.String()), zap.String("kind", "iq"),
			zap.String("node", node))
	}
	return stanza.Err(stanza.Cancel, stanza.PolicyViolation, "this account is read-only: it may publish only to private nodes")
}
