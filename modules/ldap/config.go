package ldap

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"github.com/palisade-im/palisade/server/config"
)

// Config is the [modules.ldap] section. Empty filters and attributes take
// the defaults of the directory flavour (OpenLDAP, or Active Directory with
// active_directory = true); see Effective.
type Config struct {
	// URL is ldaps://HOST[:PORT], or ldap://HOST[:PORT] with start_tls;
	// plain ldap:// without TLS only to a loopback address.
	URL string `toml:"url"`
	// StartTLS upgrades an ldap:// connection with the StartTLS operation.
	StartTLS bool `toml:"start_tls"`
	// CAFile is a PEM file of the CAs trusted for the directory's
	// certificate; "" uses the system roots.
	CAFile string `toml:"ca_file"`
	// TLSServerName overrides the name checked in the certificate
	// (default: the URL's host).
	TLSServerName string `toml:"tls_server_name"`
	// BindDN is the service account that searches; "" searches anonymously.
	BindDN string `toml:"bind_dn"`
	// BindPasswordFile holds the service account's password (one line).
	BindPasswordFile string `toml:"bind_password_file"`
	// BindPasswordEnv names an environment variable holding it instead.
	BindPasswordEnv string `toml:"bind_password_env"`
	// BaseDN is where people are searched (subtree).
	BaseDN string `toml:"base_dn"`
	// UserFilter finds a person by login name; {user} is replaced by the
	// escaped name.
	UserFilter string `toml:"user_filter"`
	// UserAttribute is the attribute whose value is the XMPP localpart:
	// uid, sAMAccountName, or mail (the part before '@').
	UserAttribute string `toml:"user_attribute"`
	// DisabledFilter matches a disabled person (tested on the person's
	// entry); "" disables nothing, except on Active Directory, where the
	// userAccountControl ACCOUNTDISABLE bit is the default.
	DisabledFilter string `toml:"disabled_filter"`
	// GroupBaseDN is where groups are searched (subtree); "" = base_dn.
	GroupBaseDN string `toml:"group_base_dn"`
	// GroupFilter finds the groups of a person; {dn} is replaced by the
	// escaped DN of the person. On Active Directory the default follows
	// nested groups (LDAP_MATCHING_RULE_IN_CHAIN).
	GroupFilter string `toml:"group_filter"`
	// MemberAttribute is the attribute of a group entry that lists its
	// members' DNs, read to list a group for shared rosters: "member"
	// (groupOfNames, the default) or "uniqueMember". On Active Directory
	// the members are found with the in-chain rule instead.
	MemberAttribute string `toml:"member_attribute"`
	// AllowedGroups are group DNs whose members may log in; empty lets
	// every person the user filter finds log in.
	AllowedGroups []string `toml:"allowed_groups"`
	// ActiveDirectory selects Active Directory defaults.
	ActiveDirectory bool `toml:"active_directory"`
	// Domains are the XMPP domains whose accounts come from the
	// directory; empty means every served domain.
	Domains []string `toml:"domains"`
	// SyncInterval is how often accounts with a session are checked
	// again (deleted, disabled, out of the allowed groups).
	SyncInterval config.Duration `toml:"sync_interval"`
	// ChangeNotification follows the directory's changes (RFC 4533
	// syncrepl) so that revocations need not wait for sync_interval; a
	// directory without syncrepl falls back to the interval.
	ChangeNotification bool `toml:"change_notification"`
	// ConnectTimeout bounds dialing and the TLS handshake.
	ConnectTimeout config.Duration `toml:"connect_timeout"`
	// RequestTimeout bounds each LDAP operation.
	RequestTimeout config.Duration `toml:"request_timeout"`
	// PoolSize is how many connections are kept open at most.
	PoolSize int `toml:"pool_size"`
	// PageSize is the page size of paged searches (RFC 2696) for groups.
	PageSize int `toml:"page_size"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config {
	return &Config{
		AllowedGroups:      []string{},
		Domains:            []string{},
		SyncInterval:       config.Duration(60 * time.Second),
		ChangeNotification: true,
		ConnectTimeout:     config.Duration(5 * time.Second),
		RequestTimeout:     config.Duration(10 * time.Second),
		PoolSize:           4,
		PageSize:           500,
	}
}

// Defaults of the two directory flavours.
const (
	DefaultUserFilter     = "(&(objectClass=inetOrgPerson)(uid={user}))"
	DefaultGroupFilter    = "(&(objectClass=groupOfNames)(member={dn}))"
	DefaultUserAttribute  = "uid"
	ADUserFilter          = "(&(objectCategory=person)(objectClass=user)(sAMAccountName={user}))"
	ADUserAttribute       = "sAMAccountName"
	ADDisabledFilter      = "(userAccountControl:" + MatchingRuleBitAnd + ":=2)"
	ADGroupFilter         = "(&(objectClass=group)(member:" + MatchingRuleInChain + ":={dn}))"
	MatchingRuleBitAnd    = "1.2.840.113556.1.4.803"  // LDAP_MATCHING_RULE_BIT_AND
	MatchingRuleInChain   = "1.2.840.113556.1.4.1941" // LDAP_MATCHING_RULE_IN_CHAIN
	MinSyncInterval       = 100 * time.Millisecond
	uacAccountDisable     = 0x2
	maxPasswordFileLength = 4096
)

// Effective returns c with the flavour's defaults filled in.
func (c Config) Effective() Config {
	pick := func(v, std, ad string) string {
		switch {
		case v != "":
			return v
		case c.ActiveDirectory:
			return ad
		}
		return std
	}
	c.UserFilter = pick(c.UserFilter, DefaultUserFilter, ADUserFilter)
	c.UserAttribute = pick(c.UserAttribute, DefaultUserAttribute, ADUserAttribute)
	c.GroupFilter = pick(c.GroupFilter, DefaultGroupFilter, ADGroupFilter)
	c.DisabledFilter = pick(c.DisabledFilter, "", ADDisabledFilter)
	c.MemberAttribute = pick(c.MemberAttribute, "member", "member")
	if c.GroupBaseDN == "" {
		c.GroupBaseDN = c.BaseDN
	}
	return c
}

// Validate checks the section; every problem names its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &config.FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if c.URL == "" {
		// An unconfigured module stays off; auth.providers = ["ldap"]
		// without a section is refused by the core's validation.
		if c.BaseDN != "" || c.BindDN != "" {
			bad("url", "must be set")
		}
		return errors.Join(errs...)
	}
	u, err := url.Parse(c.URL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "ldap" && u.Scheme != "ldaps"):
		bad("url", "%q is not an ldap:// or ldaps:// URL with a host", c.URL)
	case u.Scheme == "ldaps" && c.StartTLS:
		bad("start_tls", "must be false with an ldaps:// URL (TLS from the start)")
	case u.Scheme == "ldap" && !c.StartTLS && !loopbackHost(u.Hostname()):
		bad("url", "plain ldap:// to %q would send passwords in clear: use ldaps://, or start_tls = true (plain ldap:// is allowed only to a loopback address)", u.Hostname())
	case u.Path != "" && u.Path != "/":
		bad("url", "must not have a path (put the base DN in base_dn)")
	}
	if c.BaseDN == "" {
		bad("base_dn", "must be set")
	} else if _, err := goldap.ParseDN(c.BaseDN); err != nil {
		bad("base_dn", "%q is not a DN: %v", c.BaseDN, err)
	}
	if c.GroupBaseDN != "" {
		if _, err := goldap.ParseDN(c.GroupBaseDN); err != nil {
			bad("group_base_dn", "%q is not a DN: %v", c.GroupBaseDN, err)
		}
	}
	if c.BindDN != "" {
		if _, err := goldap.ParseDN(c.BindDN); err != nil {
			bad("bind_dn", "%q is not a DN: %v", c.BindDN, err)
		}
		if (c.BindPasswordFile == "") == (c.BindPasswordEnv == "") {
			bad("bind_password_file", "set exactly one of bind_password_file and bind_password_env with bind_dn (never the password itself)")
		}
	} else if c.BindPasswordFile != "" || c.BindPasswordEnv != "" {
		bad("bind_dn", "must be set with a bind password")
	}
	e := c.Effective()
	if err := checkTemplate(e.UserFilter, "{user}"); err != nil {
		bad("user_filter", "%v", err)
	}
	if err := checkTemplate(e.GroupFilter, "{dn}"); err != nil {
		bad("group_filter", "%v", err)
	}
	if e.DisabledFilter != "" {
		if _, err := goldap.CompileFilter(e.DisabledFilter); err != nil {
			bad("disabled_filter", "%q is not an LDAP filter: %v", e.DisabledFilter, err)
		}
	}
	if strings.ContainsAny(e.UserAttribute, " =(),") || e.UserAttribute == "" {
		bad("user_attribute", "%q is not an attribute name", e.UserAttribute)
	}
	if strings.ContainsAny(e.MemberAttribute, " =(),") {
		bad("member_attribute", "%q is not an attribute name", e.MemberAttribute)
	}
	for i, g := range c.AllowedGroups {
		if _, err := goldap.ParseDN(g); err != nil {
			bad("allowed_groups", "element %d: %q is not a DN: %v", i, g, err)
		}
	}
	if time.Duration(c.SyncInterval) < MinSyncInterval {
		bad("sync_interval", "must be at least %s, got %s", MinSyncInterval, c.SyncInterval)
	}
	if c.ConnectTimeout <= 0 {
		bad("connect_timeout", "must be a positive duration")
	}
	if c.RequestTimeout <= 0 {
		bad("request_timeout", "must be a positive duration")
	}
	if c.PoolSize < 1 || c.PoolSize > 64 {
		bad("pool_size", "must be between 1 and 64, got %d", c.PoolSize)
	}
	if c.PageSize < 1 || c.PageSize > 10000 {
		bad("page_size", "must be between 1 and 10000, got %d", c.PageSize)
	}
	return errors.Join(errs...)
}

// checkTemplate checks that a filter template holds its placeholder and
// compiles once it is filled in.
func checkTemplate(tmpl, placeholder string) error {
	if !strings.Contains(tmpl, placeholder) {
		return fmt.Errorf("%q must contain %s", tmpl, placeholder)
	}
	f := strings.ReplaceAll(tmpl, placeholder, "x")
	if _, err := goldap.CompileFilter(f); err != nil {
		return fmt.Errorf("%q is not an LDAP filter: %v", tmpl, err)
	}
	return nil
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// fill replaces placeholder in a filter template by value, escaped with
// RFC 4515 rules: a value can never add filter syntax.
func fill(tmpl, placeholder, value string) string {
	return strings.ReplaceAll(tmpl, placeholder, goldap.EscapeFilter(value))
}
