package vcard

import (
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"go.uber.org/zap"
)

// readOnly refuses a vCard change by a read-only account (send = false):
// a vCard (and its XEP-0153 avatar) is shown to others. The refusal is
// policy-violation (cancel), audited as a policy denial.
func (m *Module) readOnly(iq *stanza.Stanza) *stanza.Error {
	if m.rights == nil {
		return nil
	}
	owner := iq.From.Bare()
	r, rule := module.AccountRule(m.rights, owner)
	if r.MaySend() {
		return nil
	}
	if m.audit != nil {
		m.audit.Info("policy_denied", zap.String("policy", "access"), zap.String("reason", rule+": send = false (vcard)"),
			zap.String("from", iq.From.String()), zap.String("to", iq.To.String()), zap.String("kind", "iq"))
	}
	return stanza.Err(stanza.Cancel, stanza.PolicyViolation, "this account is read-only: it may not change its vCard")
}
