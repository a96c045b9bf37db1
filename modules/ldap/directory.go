package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"golang.org/x/text/secure/precis"
)

// errWrongPassword is a failed bind as the person (invalid credentials).
var errWrongPassword = errors.New("ldap: invalid credentials")

// errNoSuchUser is a search that found nobody.
var errNoSuchUser = errors.New("ldap: no such person")

// person is a directory entry found by the user filter.
type person struct {
	DN        string
	Localpart string
	UAC       int64 // Active Directory userAccountControl, 0 when absent
}

// directory talks to one LDAP server through a small pool of connections
// bound as the service account.
type directory struct {
	cfg      Config // effective
	tls      *tls.Config
	password string
	useTLS   bool // ldaps://
	idle     chan *pooled
	slots    chan struct{}
	dial     func() (*goldap.Conn, error) // replaced in tests
}

// pooled is one connection and whether it is bound as the service account.
type pooled struct {
	c         *goldap.Conn
	asService bool
}

// newDirectory prepares the pool; it does not connect yet.
func newDirectory(cfg Config) (*directory, error) {
	d := &directory{
		cfg:   cfg,
		idle:  make(chan *pooled, cfg.PoolSize),
		slots: make(chan struct{}, cfg.PoolSize),
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	d.useTLS = u.Scheme == "ldaps"
	name := cfg.TLSServerName
	if name == "" {
		name = u.Hostname()
	}
	d.tls = &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", cfg.CAFile)
		}
		d.tls.RootCAs = pool
	}
	switch {
	case cfg.BindPasswordFile != "":
		b, err := os.ReadFile(cfg.BindPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("bind_password_file: %w", err)
		}
		if len(b) > maxPasswordFileLength {
			return nil, fmt.Errorf("bind_password_file: %s is longer than %d bytes", cfg.BindPasswordFile, maxPasswordFileLength)
		}
		d.password = strings.TrimRight(string(b), "\r\n")
		if d.password == "" {
			return nil, fmt.Errorf("bind_password_file: %s is empty", cfg.BindPasswordFile)
		}
	case cfg.BindPasswordEnv != "":
		d.password = os.Getenv(cfg.BindPasswordEnv)
		if d.password == "" {
			return nil, fmt.Errorf("bind_password_env: environment variable %s is empty or unset", cfg.BindPasswordEnv)
		}
	}
	d.dial = d.dialURL
	return d, nil
}

func (d *directory) dialURL() (*goldap.Conn, error) {
	timeout := time.Duration(d.cfg.ConnectTimeout)
	dialer := &net.Dialer{Timeout: timeout}
	opts := []goldap.DialOpt{goldap.DialWithDialer(dialer)}
	if d.useTLS {
		opts = append(opts, goldap.DialWithTLSConfig(d.tls))
	}
	c, err := goldap.DialURL(d.cfg.URL, opts...)
	if err != nil {
		return nil, err
	}
	c.SetTimeout(time.Duration(d.cfg.RequestTimeout))
	if d.cfg.StartTLS {
		if err := c.StartTLS(d.tls); err != nil {
			c.Close()
			return nil, fmt.Errorf("StartTLS: %w", err)
		}
	}
	return c, nil
}

// with runs fn on a pooled connection bound as the service account. A
// connection found dead on reuse is replaced once.
func (d *directory) with(ctx context.Context, fn func(p *pooled) error) error {
	select {
	case d.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("ldap: waiting for a connection: %w", ctx.Err())
	}
	defer func() { <-d.slots }()
	for attempt := 0; ; attempt++ {
		p, reused, err := d.get()
		if err != nil {
			return err
		}
		err = d.ensureService(p)
		if err == nil {
			err = fn(p)
		}
		if isNetwork(err) || p.c.IsClosing() {
			p.c.Close()
			if reused && attempt == 0 {
				continue
			}
			return err
		}
		d.put(p)
		return err
	}
}

func (d *directory) get() (*pooled, bool, error) {
	for {
		select {
		case p := <-d.idle:
			if p.c.IsClosing() {
				p.c.Close()
				continue
			}
			return p, true, nil
		default:
		}
		c, err := d.dial()
		if err != nil {
			return nil, false, fmt.Errorf("ldap: connect to %s: %w", d.cfg.URL, err)
		}
		return &pooled{c: c}, false, nil
	}
}

func (d *directory) put(p *pooled) {
	select {
	case d.idle <- p:
	default:
		p.c.Close()
	}
}

func (d *directory) ensureService(p *pooled) error {
	if p.asService {
		return nil
	}
	if d.cfg.BindDN == "" {
		// Anonymous: an unauthenticated bind resets a person's bind.
		if err := p.c.UnauthenticatedBind(""); err != nil {
			return fmt.Errorf("ldap: anonymous bind: %w", err)
		}
	} else if err := p.c.Bind(d.cfg.BindDN, d.password); err != nil {
		return fmt.Errorf("ldap: bind as service account %s: %w", d.cfg.BindDN, err)
	}
	p.asService = true
	return nil
}

// close drops the idle connections.
func (d *directory) close() {
	for {
		select {
		case p := <-d.idle:
			p.c.Close()
		default:
			return
		}
	}
}

func isNetwork(err error) bool {
	if err == nil {
		return false
	}
	return goldap.IsErrorAnyOf(err, goldap.ErrorNetwork, goldap.LDAPResultServerDown, goldap.LDAPResultUnavailable) ||
		errors.Is(err, net.ErrClosed)
}

// userSearch builds the search for a login name.
func (d *directory) userSearch(login string) *goldap.SearchRequest {
	attrs := []string{d.cfg.UserAttribute}
	if d.cfg.ActiveDirectory {
		attrs = append(attrs, "userAccountControl")
	}
	return goldap.NewSearchRequest(d.cfg.BaseDN, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases,
		2, int(time.Duration(d.cfg.RequestTimeout)/time.Second), false,
		fill(d.cfg.UserFilter, "{user}", login), attrs, nil)
}

// disabledSearch tests the disabled filter on the person's own entry.
func (d *directory) disabledSearch(dn string) *goldap.SearchRequest {
	return goldap.NewSearchRequest(dn, goldap.ScopeBaseObject, goldap.NeverDerefAliases,
		1, int(time.Duration(d.cfg.RequestTimeout)/time.Second), false,
		d.cfg.DisabledFilter, []string{"1.1"}, nil)
}

// groupSearch finds the groups a DN is a member of (nested ones too with
// the in-chain rule); it runs paged.
func (d *directory) groupSearch(dn string) *goldap.SearchRequest {
	return goldap.NewSearchRequest(d.cfg.GroupBaseDN, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases,
		0, int(time.Duration(d.cfg.RequestTimeout)/time.Second), false,
		fill(d.cfg.GroupFilter, "{dn}", dn), []string{"1.1"}, nil)
}

// peopleSearch finds every person the user filter admits who is not
// disabled, with the login attribute; on Active Directory only the
// members of groupDN (nested ones too, by the in-chain rule).
func (d *directory) peopleSearch(groupDN string) *goldap.SearchRequest {
	f := "(&" + strings.ReplaceAll(d.cfg.UserFilter, "{user}", "*")
	if d.cfg.DisabledFilter != "" {
		f += "(!" + d.cfg.DisabledFilter + ")"
	}
	if d.cfg.ActiveDirectory {
		f += "(memberOf:" + MatchingRuleInChain + ":=" + goldap.EscapeFilter(groupDN) + ")"
	}
	f += ")"
	return goldap.NewSearchRequest(d.cfg.BaseDN, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases,
		0, int(time.Duration(d.cfg.RequestTimeout)/time.Second), false, f, []string{d.cfg.UserAttribute}, nil)
}

// memberSearch reads a group entry's member DNs.
func (d *directory) memberSearch(groupDN string) *goldap.SearchRequest {
	return goldap.NewSearchRequest(groupDN, goldap.ScopeBaseObject, goldap.NeverDerefAliases,
		1, int(time.Duration(d.cfg.RequestTimeout)/time.Second), false, "(objectClass=*)", []string{d.cfg.MemberAttribute}, nil)
}

// members returns the localparts of the group's members who may log in
// (the user filter finds them and they are not disabled), sorted. Entries
// that are not people (nested groups on OpenLDAP) are left out.
func (d *directory) members(ctx context.Context, groupDN string) ([]string, error) {
	var want []*goldap.DN
	var people *goldap.SearchResult
	err := d.with(ctx, func(p *pooled) error {
		if !d.cfg.ActiveDirectory {
			res, err := p.c.Search(d.memberSearch(groupDN))
			if err != nil {
				return fmt.Errorf("ldap: read group %s: %w", groupDN, err)
			}
			if len(res.Entries) != 1 {
				return fmt.Errorf("ldap: read group %s: %d entries", groupDN, len(res.Entries))
			}
			for _, v := range res.Entries[0].GetAttributeValues(d.cfg.MemberAttribute) {
				if dn, err := goldap.ParseDN(v); err == nil {
					want = append(want, dn)
				}
			}
			if len(want) == 0 {
				return nil
			}
		}
		var err error
		people, err = p.c.SearchWithPaging(d.peopleSearch(groupDN), uint32(d.cfg.PageSize))
		if err != nil {
			return fmt.Errorf("ldap: list members of %s: %w", groupDN, err)
		}
		return nil
	})
	if err != nil || people == nil {
		return nil, err
	}
	var out []string
	for _, e := range people.Entries {
		if !d.cfg.ActiveDirectory {
			dn, err := goldap.ParseDN(e.DN)
			if err != nil || !slices.ContainsFunc(want, dn.EqualFold) {
				continue
			}
		}
		lp, err := localpart(d.cfg.UserAttribute, e.GetAttributeValue(d.cfg.UserAttribute))
		if err != nil {
			continue // not an XMPP account
		}
		if !slices.Contains(out, lp) {
			out = append(out, lp)
		}
	}
	slices.Sort(out)
	return out, nil
}

// find looks a login name up; errNoSuchUser when nobody matches.
func (d *directory) find(ctx context.Context, login string) (person, error) {
	var res *goldap.SearchResult
	err := d.with(ctx, func(p *pooled) error {
		var err error
		res, err = p.c.Search(d.userSearch(login))
		return err
	})
	if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
		return person{}, errNoSuchUser
	}
	if goldap.IsErrorWithCode(err, goldap.LDAPResultSizeLimitExceeded) {
		return person{}, fmt.Errorf("ldap: user filter matches more than one entry for %q", login)
	}
	if err != nil {
		return person{}, fmt.Errorf("ldap: search person: %w", err)
	}
	switch len(res.Entries) {
	case 0:
		return person{}, errNoSuchUser
	case 1:
	default:
		return person{}, fmt.Errorf("ldap: user filter matches %d entries for %q", len(res.Entries), login)
	}
	e := res.Entries[0]
	lp, err := localpart(d.cfg.UserAttribute, e.GetAttributeValue(d.cfg.UserAttribute))
	if err != nil {
		return person{}, fmt.Errorf("ldap: %s: %w", e.DN, err)
	}
	pe := person{DN: e.DN, Localpart: lp}
	if v := e.GetAttributeValue("userAccountControl"); v != "" {
		pe.UAC, _ = strconv.ParseInt(v, 10, 64)
	}
	return pe, nil
}

// localpart maps the user attribute's value to an XMPP localpart.
func localpart(attr, value string) (string, error) {
	if strings.EqualFold(attr, "mail") || strings.EqualFold(attr, "userPrincipalName") {
		value, _, _ = strings.Cut(value, "@")
	}
	if value == "" {
		return "", fmt.Errorf("no %s value", attr)
	}
	lp, err := precis.UsernameCaseMapped.String(value)
	if err != nil {
		return "", fmt.Errorf("%s %q is not a valid localpart: %v", attr, value, err)
	}
	return lp, nil
}

// verify binds as the person with password. A wrong password is
// errWrongPassword; the connection is bound as the service account again
// before anyone else uses it.
func (d *directory) verify(ctx context.Context, dn, password string) error {
	if password == "" {
		return errWrongPassword // an empty password would be an anonymous bind (RFC 4513 5.1.2)
	}
	return d.with(ctx, func(p *pooled) error {
		p.asService = false
		err := p.c.Bind(dn, password)
		if goldap.IsErrorWithCode(err, goldap.LDAPResultInvalidCredentials) {
			return errWrongPassword
		}
		if err != nil {
			return fmt.Errorf("ldap: bind as %s: %w", dn, err)
		}
		return nil
	})
}

// standing is what the directory says of a person now.
type standing struct {
	// Reason says why the person may not use Palisade, "" when they may.
	Reason   string
	Disabled bool
	// Groups are the DNs of the groups found for the person (searched
	// only when allowed_groups or [groups] needs them).
	Groups []string
}

// refusal looks up a person's standing: disabled, and group membership.
func (d *directory) refusal(ctx context.Context, pe person, wantGroups bool) (standing, error) {
	var st standing
	if d.cfg.ActiveDirectory && pe.UAC&uacAccountDisable != 0 {
		return standing{Reason: "disabled in the directory (userAccountControl)", Disabled: true}, nil
	}
	err := d.with(ctx, func(p *pooled) error {
		if d.cfg.DisabledFilter != "" {
			res, err := p.c.Search(d.disabledSearch(pe.DN))
			if goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
				st.Reason = "deleted from the directory"
				return nil
			}
			if err != nil {
				return fmt.Errorf("ldap: disabled check: %w", err)
			}
			if len(res.Entries) > 0 {
				st.Reason, st.Disabled = "disabled in the directory", true
				return nil
			}
		}
		if len(d.cfg.AllowedGroups) == 0 && !wantGroups {
			return nil
		}
		res, err := p.c.SearchWithPaging(d.groupSearch(pe.DN), uint32(d.cfg.PageSize))
		if err != nil && !goldap.IsErrorWithCode(err, goldap.LDAPResultNoSuchObject) {
			return fmt.Errorf("ldap: group search: %w", err)
		}
		if res != nil {
			for _, e := range res.Entries {
				st.Groups = append(st.Groups, e.DN)
			}
		}
		if len(d.cfg.AllowedGroups) > 0 && !inAllowed(st.Groups, d.cfg.AllowedGroups) {
			st.Reason = "not a member of an allowed group"
		}
		return nil
	})
	return st, err
}

// inAllowed reports whether one of the groups found is allowed (DNs are
// compared by their parsed form, so case and spacing do not matter).
func inAllowed(groups []string, allowed []string) bool {
	for _, g := range groups {
		got, err := goldap.ParseDN(g)
		if err != nil {
			continue
		}
		for _, a := range allowed {
			if want, err := goldap.ParseDN(a); err == nil && got.EqualFold(want) {
				return true
			}
		}
	}
	return false
}
