package roster

import "github.com/palisade-im/palisade/storage"

// state is a roster item's subscription state as RFC 6121 Appendix A.1
// defines it: the four flags give the nine defined states ("None + Pending
// Out", "To + Pending In", ...). pendOut never goes with to, pendIn never
// with from.
type state struct {
	to, from        bool
	pendOut, pendIn bool
}

// stateOf reads the state of a stored item.
func stateOf(it storage.RosterItem) state {
	return state{
		to:      it.Subscription == storage.SubTo || it.Subscription == storage.SubBoth,
		from:    it.Subscription == storage.SubFrom || it.Subscription == storage.SubBoth,
		pendOut: it.Ask,
		pendIn:  it.PendingIn,
	}
}

// apply writes s into it. PendingInStanza is cleared with the Pending In
// flag; Approved is cleared once the contact has a subscription (a
// pre-approval means nothing then).
func (s state) apply(it *storage.RosterItem) {
	switch {
	case s.to && s.from:
		it.Subscription = storage.SubBoth
	case s.to:
		it.Subscription = storage.SubTo
	case s.from:
		it.Subscription = storage.SubFrom
	default:
		it.Subscription = storage.SubNone
	}
	it.Ask = s.pendOut
	it.PendingIn = s.pendIn
	if !s.pendIn {
		it.PendingInStanza = nil
	}
	if s.from {
		it.Approved = false
	}
}

// String names the state as RFC 6121 Appendix A does.
func (s state) String() string {
	var n string
	switch {
	case s.to && s.from:
		n = "Both"
	case s.to:
		n = "To"
	case s.from:
		n = "From"
	default:
		n = "None"
	}
	switch {
	case s.pendOut && s.pendIn:
		n += " + Pending Out+In"
	case s.pendOut:
		n += " + Pending Out"
	case s.pendIn:
		n += " + Pending In"
	}
	return n
}

// Presence types that manage subscriptions (RFC 6121 section 3).
const (
	typeSubscribe    = "subscribe"
	typeSubscribed   = "subscribed"
	typeUnsubscribe  = "unsubscribe"
	typeUnsubscribed = "unsubscribed"
)

// outbound applies the tables of RFC 6121 Appendix A.2 to a subscription
// stanza the user sends: whether the user's server routes it to the contact
// and the user's new state. Pre-approval (an outbound "subscribed" with no
// request pending) is the caller's business: the table says "no route".
func outbound(typ string, s state) (route bool, next state) {
	next = s
	switch typ {
	case typeSubscribe: // A.2.1: always routed
		if !s.to {
			next.pendOut = true
		}
		return true, next
	case typeUnsubscribe: // A.2.2: always routed
		next.to, next.pendOut = false, false
		return true, next
	case typeSubscribed: // A.2.3
		if s.pendIn {
			next.pendIn, next.from = false, true
			return true, next
		}
	case typeUnsubscribed: // A.2.4
		if s.pendIn || s.from {
			next.pendIn, next.from = false, false
			return true, next
		}
	}
	return false, s
}

// inbound applies the tables of RFC 6121 Appendix A.3 to a subscription
// stanza addressed to the user: whether the user's server delivers it to the
// user's available resources and the user's new state. The automatic replies
// (an inbound "subscribe" from a contact that already has a subscription, or
// one pre-approved) are the caller's business: the table says "no".
func inbound(typ string, s state) (deliver bool, next state) {
	next = s
	switch typ {
	case typeSubscribe: // A.3.1
		if !s.from && !s.pendIn {
			next.pendIn = true
			return true, next
		}
	case typeSubscribed: // A.3.3
		if s.pendOut {
			next.pendOut, next.to = false, true
			return true, next
		}
	case typeUnsubscribe: // A.3.2
		if s.pendIn || s.from {
			next.pendIn, next.from = false, false
			return true, next
		}
	case typeUnsubscribed: // A.3.4
		if s.pendOut || s.to {
			next.pendOut, next.to = false, false
			return true, next
		}
	}
	return false, s
}
