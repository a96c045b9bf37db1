package config

import (
	"slices"
	"strings"
)

// Values of Rights.Contacts and Rights.Subscriptions, from the narrowest.
const (
	// ContactsNone refuses every subscription request (subscriptions only).
	ContactsNone = "none"
	// ContactsRoster admits the account's contacts: a subscription in
	// either direction, a request the account sent, a shared-roster group.
	ContactsRoster = "roster"
	// ContactsOrganisation also admits every local account.
	ContactsOrganisation = "organisation"
	// ContactsPartners also admits the accounts of live federation partners.
	ContactsPartners = "partners"
	// ContactsAnyone admits everyone (the default).
	ContactsAnyone = "anyone"
)

// ContactScopes returns the values accepted in contacts.
func ContactScopes() []string {
	return []string{ContactsRoster, ContactsOrganisation, ContactsPartners, ContactsAnyone}
}

// SubscriptionScopes returns the values accepted in subscriptions.
func SubscriptionScopes() []string {
	return []string{ContactsNone, ContactsOrganisation, ContactsPartners, ContactsAnyone}
}

// ContactScope returns Contacts, ContactsAnyone when unset.
func (r Rights) ContactScope() string {
	if r.Contacts == "" {
		return ContactsAnyone
	}
	return r.Contacts
}

// SubscriptionScope returns Subscriptions, ContactsAnyone when unset.
func (r Rights) SubscriptionScope() string {
	if r.Subscriptions == "" {
		return ContactsAnyone
	}
	return r.Subscriptions
}

// validateContacts checks the contacts, subscriptions and contacts_exempt
// keys of one rule (key is "access.default" or "access.rule[i]").
func (l *loader) validateContacts(key string, r Rights, groups map[string]string) {
	quoted := func(vals []string) string {
		q := make([]string, len(vals))
		for i, v := range vals {
			q[i] = `"` + v + `"`
		}
		return strings.Join(q, ", ")
	}
	if r.Contacts != "" && !slices.Contains(ContactScopes(), r.Contacts) {
		l.invalid(key+".contacts", -1, "must be one of %s, got %q", quoted(ContactScopes()), r.Contacts)
	}
	if r.Subscriptions != "" && !slices.Contains(SubscriptionScopes(), r.Subscriptions) {
		l.invalid(key+".subscriptions", -1, "must be one of %s, got %q", quoted(SubscriptionScopes()), r.Subscriptions)
	}
	for i, g := range r.ContactsExempt {
		if _, ok := groups[g]; !ok {
			l.invalid(key+".contacts_exempt", i, "unknown group %q (define it in [groups])", g)
		}
	}
}
