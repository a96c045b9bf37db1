package ldap

import (
	"strings"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/palisade-im/palisade/server/config"
)

func parse(t *testing.T, section string) error {
	t.Helper()
	doc := "[auth]\nproviders = [\"ldap\", \"internal\"]\n\n[modules.ldap]\n" + section
	_, err := config.Parse("palisade.toml", []byte(doc), config.StaticRegistry{"ldap": func() any { return DefaultConfig() }})
	return err
}

func TestConfigErrors(t *testing.T) {
	base := "base_dn = \"ou=people,dc=corp,dc=example\"\n"
	for _, tc := range []struct{ section, want string }{
		{"url = \"ldap://dc1.corp.example\"\n" + base, "palisade.toml:5:1: modules.ldap.url: plain ldap:// to \"dc1.corp.example\" would send passwords in clear"},
		{base + "url = \"ldap://10.0.0.5:389\"\n", "palisade.toml:6:1: modules.ldap.url: plain ldap://"},
		{"url = \"ldaps://dc1\"\nstart_tls = true\n" + base, "palisade.toml:6:1: modules.ldap.start_tls: must be false with an ldaps:// URL"},
		{"url = \"http://dc1\"\n" + base, "modules.ldap.url: \"http://dc1\" is not an ldap:// or ldaps:// URL"},
		{"url = \"ldaps://dc1\"\n", "modules.ldap.base_dn: must be set"},
		{"url = \"ldaps://dc1\"\n" + base + "user_filter = \"(uid=alice)\"\n", "palisade.toml:7:1: modules.ldap.user_filter: \"(uid=alice)\" must contain {user}"},
		{"url = \"ldaps://dc1\"\n" + base + "user_filter = \"(uid={user}\"\n", "modules.ldap.user_filter: \"(uid={user}\" is not an LDAP filter"},
		{"url = \"ldaps://dc1\"\n" + base + "group_filter = \"(member=x)\"\n", "modules.ldap.group_filter: \"(member=x)\" must contain {dn}"},
		{"url = \"ldaps://dc1\"\n" + base + "bind_dn = \"cn=p,dc=x\"\n", "modules.ldap.bind_password_file: set exactly one of"},
		{"url = \"ldaps://dc1\"\n" + base + "bind_dn = \"cn=p,dc=x\"\nbind_password_file = \"f\"\nbind_password_env = \"E\"\n", "modules.ldap.bind_password_file: set exactly one of"},
		{"url = \"ldaps://dc1\"\n" + base + "bind_password = \"secret\"\n", "palisade.toml:7:1: modules.ldap.bind_password: unknown key"},
		{"url = \"ldaps://dc1\"\n" + base + "sync_interval = \"1ms\"\n", "modules.ldap.sync_interval: must be at least 100ms"},
		{"url = \"ldaps://dc1\"\n" + base + "pool_size = 0\n", "modules.ldap.pool_size: must be between 1 and 64"},
		{"url = \"ldaps://dc1\"\n" + base + "allowed_groups = [\"not a dn\"]\n", "modules.ldap.allowed_groups: element 0"},
	} {
		err := parse(t, tc.section)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("section:\n%s\nerr = %v\nwant %q", tc.section, err, tc.want)
		}
	}
	for _, ok := range []string{
		"url = \"ldaps://dc1.corp.example\"\n" + base,
		"url = \"ldap://dc1.corp.example\"\nstart_tls = true\n" + base,
		"url = \"ldap://127.0.0.1:3890\"\n" + base,
		"url = \"ldap://[::1]:3890\"\n" + base,
		"url = \"ldaps://dc1\"\nactive_directory = true\n" + base,
	} {
		if err := parse(t, ok); err != nil {
			t.Errorf("section:\n%s\nrefused: %v", ok, err)
		}
	}
}

// TestActiveDirectory checks the requests the Active Directory flavour
// generates: no AD runs here, so the filters themselves are the proof.
func TestActiveDirectory(t *testing.T) {
	c := DefaultConfig()
	c.URL = "ldaps://dc1.corp.example"
	c.BaseDN = "DC=corp,DC=example"
	c.ActiveDirectory = true
	d, err := newDirectory(c.Effective())
	if err != nil {
		t.Fatal(err)
	}
	us := d.userSearch("j*)(x")
	if want := `(&(objectCategory=person)(objectClass=user)(sAMAccountName=j\2a\29\28x))`; us.Filter != want {
		t.Errorf("user filter %s, want %s", us.Filter, want)
	}
	if !contains(us.Attributes, "userAccountControl") || !contains(us.Attributes, "sAMAccountName") {
		t.Errorf("user attributes %v", us.Attributes)
	}
	gs := d.groupSearch(`CN=Doe\, John (x),OU=People,DC=corp,DC=example`)
	if want := `(&(objectClass=group)(member:1.2.840.113556.1.4.1941:=CN=Doe\5c, John \28x\29,OU=People,DC=corp,DC=example))`; gs.Filter != want {
		t.Errorf("group filter %s, want %s", gs.Filter, want)
	}
	if gs.BaseDN != c.BaseDN || gs.Scope != goldap.ScopeWholeSubtree {
		t.Errorf("group search base %q scope %d", gs.BaseDN, gs.Scope)
	}
	ds := d.disabledSearch("CN=x,DC=corp,DC=example")
	if ds.Filter != "(userAccountControl:1.2.840.113556.1.4.803:=2)" || ds.Scope != goldap.ScopeBaseObject {
		t.Errorf("disabled search %q scope %d", ds.Filter, ds.Scope)
	}
	// Members of a group for shared rosters: people in it, nested groups
	// included, not disabled, in one paged search.
	ps := d.peopleSearch(`CN=Desk (FX),OU=Groups,DC=corp,DC=example`)
	if want := `(&(&(objectCategory=person)(objectClass=user)(sAMAccountName=*))(!(userAccountControl:1.2.840.113556.1.4.803:=2))` +
		`(memberOf:1.2.840.113556.1.4.1941:=CN=Desk \28FX\29,OU=Groups,DC=corp,DC=example))`; ps.Filter != want {
		t.Errorf("people filter %s, want %s", ps.Filter, want)
	}
	if ps.BaseDN != c.BaseDN || !contains(ps.Attributes, "sAMAccountName") {
		t.Errorf("people search base %q attributes %v", ps.BaseDN, ps.Attributes)
	}
	for _, f := range []string{us.Filter, gs.Filter, ds.Filter, ps.Filter} {
		if _, err := goldap.CompileFilter(f); err != nil {
			t.Errorf("%s does not compile: %v", f, err)
		}
	}
	// userAccountControl 514 = NORMAL_ACCOUNT | ACCOUNTDISABLE.
	st, err := d.refusal(t.Context(), person{DN: "CN=x", UAC: 514}, false)
	if err != nil || !st.Disabled || st.Reason == "" {
		t.Errorf("uac 514: %+v %v", st, err)
	}
}

func TestLocalpart(t *testing.T) {
	for _, tc := range []struct{ attr, value, want string }{
		{"uid", "Alice", "alice"},
		{"mail", "J.Doe@corp.example", "j.doe"},
		{"sAMAccountName", "JDOE", "jdoe"},
		{"userPrincipalName", "jdoe@corp.example", "jdoe"},
	} {
		got, err := localpart(tc.attr, tc.value)
		if err != nil || got != tc.want {
			t.Errorf("localpart(%s, %s) = %q, %v; want %q", tc.attr, tc.value, got, err, tc.want)
		}
	}
	if _, err := localpart("uid", ""); err == nil {
		t.Error("empty value accepted")
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
