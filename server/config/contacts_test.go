package config

import (
	"strings"
	"testing"
)

func TestContactsKeys(t *testing.T) {
	good := `[groups]
exec = ""
helpdesk = ""

[access]
default = { contacts = "organisation", subscriptions = "none" }

[[access.rule]]
group = "exec"
contacts = "roster"
subscriptions = "partners"
contacts_exempt = ["helpdesk"]
`
	cfg, err := Parse("p.toml", []byte(good), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Access.Rules[0].Rights
	if r.ContactScope() != ContactsRoster || r.SubscriptionScope() != ContactsPartners || len(r.ContactsExempt) != 1 {
		t.Errorf("rule rights = %+v", r)
	}
	if d := cfg.Access.Default; d.ContactScope() != ContactsOrganisation || d.SubscriptionScope() != ContactsNone {
		t.Errorf("default rights = %+v", d)
	}
	if (Rights{}).ContactScope() != ContactsAnyone || (Rights{}).SubscriptionScope() != ContactsAnyone {
		t.Error("unset contacts or subscriptions is not anyone")
	}

	bad := `[groups]
exec = ""

[[access.rule]]
group = "exec"
contacts = "friends"
subscriptions = "roster"
contacts_exempt = ["exec", "helpdesk"]

[access]
default = { contacts = "none" }
`
	_, err = Parse("p.toml", []byte(bad), nil)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`p.toml:6:1: access.rule[0].contacts: must be one of "roster", "organisation", "partners", "anyone", got "friends"`,
		`p.toml:7:1: access.rule[0].subscriptions: must be one of "none", "organisation", "partners", "anyone", got "roster"`,
		`p.toml:8:28: access.rule[0].contacts_exempt: unknown group "helpdesk"`,
		`access.default.contacts: must be one of "roster", "organisation", "partners", "anyone", got "none"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}
