package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/palisade-im/palisade/modules/archive/cosignature"
	"mellium.im/xmpp/jid"
)

// validator is implemented by module config structs that check themselves.
type validator interface{ Validate() error }

// groupsValidator is implemented by module config structs that name
// [groups] entries; it gets the declared groups.
type groupsValidator interface {
	ValidateGroups(groups map[string]string) error
}

// validate checks every setting of c, reporting through l.invalid.
func (l *loader) validate(c *Config) {
	l.validateServer(&c.Server)
	l.validateListen(&c.Listen)
	l.validateDiscovery(c) // clients.go

	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		if c.TLS.CertFile == "" {
			l.invalid("tls.cert_file", -1, "must be set when tls.key_file is set")
		} else {
			l.invalid("tls.key_file", -1, "must be set when tls.cert_file is set")
		}
	}

	lim := &c.Limits
	if lim.MaxStanzaBytes < MinStanzaBytes || lim.MaxStanzaBytes > MaxStanzaBytes {
		l.invalid("limits.max_stanza_bytes", -1, "must be between %d and %d", MinStanzaBytes, MaxStanzaBytes)
	}
	if lim.MaxStanzaBytes >= MinStanzaBytes && (lim.PreauthStanzaBytes < MinStanzaBytes || lim.PreauthStanzaBytes > lim.MaxStanzaBytes) {
		l.invalid("limits.preauth_stanza_bytes", -1, "must be between %d and limits.max_stanza_bytes (%d)", MinStanzaBytes, lim.MaxStanzaBytes)
	}
	if lim.SendQueueBytes > lim.AccountQueueBytes && lim.AccountQueueBytes > 0 {
		l.invalid("limits.send_queue_bytes", -1, "must not exceed limits.account_queue_bytes (%d)", lim.AccountQueueBytes)
	}
	for _, d := range []struct {
		key string
		val Duration
	}{
		{"limits.auth_timeout", lim.AuthTimeout},
		{"limits.registration_timeout", lim.RegistrationTimeout},
		{"limits.idle_timeout", lim.IdleTimeout},
		{"limits.ping_timeout", lim.PingTimeout},
		{"limits.resume_timeout", lim.ResumeTimeout},
	} {
		if d.val <= 0 {
			l.invalid(d.key, -1, "must be a positive duration, got %s", d.val)
		}
	}
	if lim.RegistrationTimeout > Duration(time.Hour) {
		// Bounded: a registration form must not hold a connection open
		// for long without a login.
		l.invalid("limits.registration_timeout", -1, "must be at most 1h, got %s", lim.RegistrationTimeout)
	}
	for _, n := range []struct {
		key string
		val int
	}{
		{"limits.send_queue", lim.SendQueue},
		{"limits.max_offline_messages", lim.MaxOfflineMessages},
		{"limits.max_sessions_per_user", lim.MaxSessionsPerUser},
		{"limits.max_stanza_elements", lim.MaxStanzaElements},
		{"limits.send_queue_bytes", lim.SendQueueBytes},
		{"limits.account_queue_bytes", lim.AccountQueueBytes},
		{"limits.max_offline_bytes", lim.MaxOfflineBytes},
		{"limits.max_private_items", lim.MaxPrivateItems},
		{"limits.max_private_bytes", lim.MaxPrivateBytes},
		{"limits.max_pep_nodes", lim.MaxPEPNodes},
		{"limits.max_pep_node_bytes", lim.MaxPEPNodeBytes},
		{"limits.max_pep_bytes", lim.MaxPEPBytes},
		{"limits.max_vcard_bytes", lim.MaxVCardBytes},
	} {
		if n.val < 1 {
			l.invalid(n.key, -1, "must be at least 1, got %d", n.val)
		}
	}

	for _, n := range []struct {
		key string
		val int
	}{
		{"limits.max_unauthenticated", lim.MaxUnauthenticated},
		{"limits.max_unauthenticated_per_ip", lim.MaxUnauthenticatedPerIP},
		{"limits.read_bytes_per_second", lim.ReadBytesPerSecond},
	} {
		if n.val < 0 {
			l.invalid(n.key, -1, "must be 0 (no limit) or more, got %d", n.val)
		}
	}
	if r := lim.ConnectionRatePerIP; r < 0 || r != r {
		l.invalid("limits.connection_rate_per_ip", -1, "must be 0 (no limit) or more, got %v", r)
	} else if r > 0 && lim.ConnectionBurstPerIP < 1 {
		l.invalid("limits.connection_burst_per_ip", -1, "must be at least 1, got %d", lim.ConnectionBurstPerIP)
	}
	if lim.ReadBytesPerSecond > 0 && (lim.ReadBytesPerSecond < 1024 || lim.ReadBurstBytes < 4096 || lim.ReadBurstBytes < lim.ReadBytesPerSecond/10) {
		// A session reads in chunks of up to 4 KiB; a burst below that, or
		// far below the rate, would pause reading for every chunk.
		if lim.ReadBytesPerSecond < 1024 {
			l.invalid("limits.read_bytes_per_second", -1, "must be 0 (no limit) or at least 1024, got %d", lim.ReadBytesPerSecond)
		} else {
			l.invalid("limits.read_burst_bytes", -1, "must be at least 4096 and a tenth of limits.read_bytes_per_second, got %d", lim.ReadBurstBytes)
		}
	}

	if !slices.Contains([]string{"json", "console"}, c.Log.Format) {
		l.invalid("log.format", -1, `must be "json" or "console", got %q`, c.Log.Format)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		l.invalid("log.level", -1, `must be one of "debug", "info", "warn", "error", got %q`, c.Log.Level)
	}
	if c.Log.AuditFileMaxMB < 0 || c.Log.AuditFileMaxMB > 1<<20 {
		l.invalid("log.audit_file_max_mb", -1, "must be between 0 (never rotate) and %d, got %d", 1<<20, c.Log.AuditFileMaxMB)
	}
	if c.Log.AuditFileKeep < 1 || c.Log.AuditFileKeep > 1000 {
		l.invalid("log.audit_file_keep", -1, "must be between 1 and 1000 (rotated files kept), got %d", c.Log.AuditFileKeep)
	}
	if v := c.Log.AuditFile; v != "" && (strings.HasSuffix(v, "/") || v == "." || v == ".." || strings.HasSuffix(v, "/.") || strings.HasSuffix(v, "/..")) {
		l.invalid("log.audit_file", -1, "%q names a directory, not a file", v)
	}
	if v := c.Log.AuditSyslog; v != "" && v != "local" {
		u, err := url.Parse(v)
		switch {
		case err != nil || !slices.Contains([]string{"udp", "tcp", "unix", "unixgram"}, u.Scheme):
			l.invalid("log.audit_syslog", -1, `must be "", "local", "udp://HOST:PORT", "tcp://HOST:PORT", "unix:///PATH" or "unixgram:///PATH", got %q`, v)
		case (u.Scheme == "udp" || u.Scheme == "tcp") && checkAddr(u.Host) != nil:
			l.invalid("log.audit_syslog", -1, "%q: %v", v, checkAddr(u.Host))
		case (u.Scheme == "unix" || u.Scheme == "unixgram") && u.Path == "":
			l.invalid("log.audit_syslog", -1, "%q names no socket path", v)
		}
	}

	if len(c.Auth.Providers) == 0 {
		l.invalid("auth.providers", -1, "at least one provider is required")
	}
	known := KnownProviders()
	for i, p := range c.Auth.Providers {
		switch {
		case !slices.Contains(known, p):
			l.invalid("auth.providers", i, "unknown provider %q (known: %s)", p, strings.Join(known, ", "))
		case slices.Index(c.Auth.Providers, p) < i:
			l.invalid("auth.providers", i, "duplicate provider %q", p)
		}
	}
	for i, p := range c.Auth.Providers {
		if p == "internal" || !slices.Contains(known, p) {
			continue
		}
		if _, registered := l.moduleConfig(p); !registered || l.idx == nil {
			continue // a provider no module implements is refused when the server is built
		}
		if sec, ok := c.Modules[p]; !ok || sec.Line == 0 {
			l.invalid("auth.providers", i, "provider %q needs a [modules.%s] section", p, p)
		}
	}
	if c.Auth.SCRAMIterations < MinSCRAMIterations {
		l.invalid("auth.scram_iterations", -1, "must be at least %d, got %d", MinSCRAMIterations, c.Auth.SCRAMIterations)
	}

	if c.Auth.LockoutThreshold < 0 {
		l.invalid("auth.lockout_threshold", -1, "must be 0 (off) or more, got %d", c.Auth.LockoutThreshold)
	}
	if c.Auth.AddressThreshold < 0 {
		l.invalid("auth.address_threshold", -1, "must be 0 (off) or more, got %d", c.Auth.AddressThreshold)
	}
	if c.Auth.LockoutDuration <= 0 {
		l.invalid("auth.lockout_duration", -1, "must be a positive duration, got %s", c.Auth.LockoutDuration)
	}
	if c.Auth.FailureDelay < 0 || c.Auth.MaxFailureDelay < c.Auth.FailureDelay {
		l.invalid("auth.max_failure_delay", -1, "must be at least auth.failure_delay (%s), got %s", c.Auth.FailureDelay, c.Auth.MaxFailureDelay)
	}
	if n := c.Auth.PasswordMinLength; n < MinPasswordLength || n > MaxPasswordLength {
		l.invalid("auth.password_min_length", -1, "must be between %d and %d, got %d", MinPasswordLength, MaxPasswordLength, n)
	}
	if c.Archive.CheckpointInterval < Duration(MinCheckpointInterval) {
		l.invalid("archive.checkpoint_interval", -1, "must be at least %s, got %s", MinCheckpointInterval, c.Archive.CheckpointInterval)
	}

	if v := c.Archive.CheckpointSyslog; v != "" && v != "local" {
		u, err := url.Parse(v)
		switch {
		case err != nil || !slices.Contains([]string{"udp", "tcp", "unix", "unixgram"}, u.Scheme):
			l.invalid("archive.checkpoint_syslog", -1, `must be "local", "udp://HOST:PORT", "tcp://HOST:PORT" or "unix:///PATH", got %q`, v)
		case (u.Scheme == "udp" || u.Scheme == "tcp") && checkAddr(u.Host) != nil:
			l.invalid("archive.checkpoint_syslog", -1, "%q: %v", v, checkAddr(u.Host))
		case (u.Scheme == "unix" || u.Scheme == "unixgram") && u.Path == "":
			l.invalid("archive.checkpoint_syslog", -1, "%q names no socket path", v)
		}
	}
	for i, v := range c.Archive.CheckpointURLs {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.invalid("archive.checkpoint_urls", i, "%q is not an http:// or https:// URL", v)
		}
	}

	if c.Archive.PurgeInterval < Duration(MinCheckpointInterval) {
		l.invalid("archive.purge_interval", -1, "must be at least %s, got %s", MinCheckpointInterval, c.Archive.PurgeInterval)
	}
	for i, f := range c.Archive.OfficerKeys {
		switch {
		case strings.TrimSpace(f) == "":
			l.invalid("archive.officer_keys", i, "empty file name")
		case slices.Index(c.Archive.OfficerKeys, f) < i:
			l.invalid("archive.officer_keys", i, "duplicate file %q", f)
		}
	}
	l.validateRetention(c.Archive.Retention, c.Groups)
	l.validateHolds(c.Archive.Holds)
	l.validateWitnesses(c.Archive.Witnesses)
	l.validateAccess(c)
	l.validateFederation(&c.Federation, c.Server.Domains) // federation_validate.go
	l.validateContent(c)                                  // content.go

	names := make([]string, 0, len(c.Modules))
	for n := range c.Modules {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if v, ok := c.Modules[n].Value.(validator); ok {
			if err := v.Validate(); err != nil {
				l.moduleErrors(n, err)
				continue
			}
		}
		if v, ok := c.Modules[n].Value.(groupsValidator); ok {
			if err := v.ValidateGroups(c.Groups); err != nil {
				l.moduleErrors(n, err)
			}
		}
	}
}

// validateAccess checks [groups], [access] default and [[access.rule]].
func (l *loader) validateAccess(c *Config) {
	groupNames := make([]string, 0, len(c.Groups))
	for g := range c.Groups {
		groupNames = append(groupNames, g)
	}
	slices.Sort(groupNames)
	for _, g := range groupNames {
		// "" declares a group with internal members only.
		if dn := c.Groups[g]; dn != "" && (strings.TrimSpace(dn) == "" || !strings.Contains(dn, "=")) {
			l.invalid("groups."+g, -1, "%q is not a directory group DN (or \"\" for a group of internal accounts only)", dn)
		}
		if strings.TrimSpace(g) == "" || strings.ContainsFunc(g, unicode.IsControl) {
			l.invalid("groups."+g, -1, "%q is not a usable group name", g)
		}
	}
	check := func(key string, r Rule, isDefault bool) {
		switch {
		case isDefault:
		case (r.Group == "") == (r.JID == ""):
			l.invalid(key, -1, "set exactly one of group and jid")
		case r.Group != "":
			if _, ok := c.Groups[r.Group]; !ok {
				l.invalid(key+".group", -1, "unknown group %q (define it in [groups])", r.Group)
			}
		case r.JID != "":
			j, err := jid.Parse(r.JID)
			if err != nil || j.Localpart() == "" || j.Resourcepart() != "" || j.String() != r.JID {
				l.invalid(key+".jid", -1, "%q is not a normalized bare JID", r.JID)
			}
		}
		for i, n := range r.Networks {
			if _, _, err := net.ParseCIDR(n); err != nil {
				l.invalid(key+".networks", i, "%q is not a CIDR range like \"10.0.0.0/8\"", n)
			}
		}
		if r.MaxSessions < 0 {
			l.invalid(key+".max_sessions", -1, "must be 0 (limits.max_sessions_per_user) or more, got %d", r.MaxSessions)
		}
		if r.MaxSessionDuration < 0 {
			l.invalid(key+".max_session_duration", -1, "must be 0 (no limit) or a positive duration, got %s", r.MaxSessionDuration)
		} else if r.MaxSessionDuration > 0 && time.Duration(r.MaxSessionDuration) < time.Second {
			l.invalid(key+".max_session_duration", -1, "must be 0 (no limit) or at least 1s, got %s", r.MaxSessionDuration)
		}
		l.validateFederate(key+".federate", r.Federate, c.Federation.Partners) // federate.go
		l.validateContacts(key, r.Rights, c.Groups)                            // contacts.go
		if r.FileTransfer != "" && !slices.Contains(FileTransferScopes(), r.FileTransfer) {
			l.invalid(key+".file_transfer", -1, `must be "none", "contacts" or "all", got %q`, r.FileTransfer)
		}
		if r.Encryption != "" && !slices.Contains(EncryptionPolicies(), r.Encryption) {
			l.invalid(key+".encryption", -1, `must be "required", "allowed" or "forbidden", got %q`, r.Encryption)
		}
	}
	l.encryptionOf("access.default", &c.Access.Default)
	for i := range c.Access.Rules {
		l.encryptionOf(elemKey("access.rule", i), &c.Access.Rules[i].Rights)
	}
	check("access.default", Rule{Rights: c.Access.Default}, true)
	for i, r := range c.Access.Rules {
		check(elemKey("access.rule", i), r, false)
	}
}

// moduleErrors reports a module's Validate error: each *FieldError at its
// key inside [modules.NAME], anything else at the section.
func (l *loader) moduleErrors(name string, err error) {
	var fe *FieldError
	if multi, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range multi.Unwrap() {
			l.moduleErrors(name, e)
		}
		return
	}
	if errors.As(err, &fe) {
		l.invalid("modules."+name+"."+fe.Key, -1, "%s", fe.Msg)
		return
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	l.invalid("modules."+name, -1, "%s", msg)
}

func (l *loader) validateServer(s *Server) {
	if len(s.Domains) == 0 {
		l.invalid("server.domains", -1, "at least one domain is required")
	}
	for i, d := range s.Domains {
		if err := checkDomain(d); err != nil {
			l.invalid("server.domains", i, "%v", err)
		} else if slices.Index(s.Domains, d) < i {
			l.invalid("server.domains", i, "duplicate domain %q", d)
		}
	}
	if s.DataDir == "" {
		l.invalid("server.data_dir", -1, "must not be empty")
	}
	l.checkBareJIDs("server.admins", s.Admins)
	for i, a := range s.Admins {
		if j, err := jid.Parse(a); err == nil && j.Localpart() != "" && j.String() == a && !slices.Contains(s.Domains, j.Domainpart()) {
			l.invalid("server.admins", i, "%q is not an account of a served domain (server.domains)", a)
		}
	}
}

// checkDomain accepts a domain only in the normalized form that
// mellium.im/xmpp/jid gives it (lowercase, no trailing dot, Unicode rather
// than punycode).
func checkDomain(d string) error {
	j, err := jid.New("", d, "")
	if err != nil {
		return fmt.Errorf("%q is not a valid domain: %v", d, err)
	}
	if norm := j.Domainpart(); norm != d {
		return fmt.Errorf("%q is not a normalized domain (write %q)", d, norm)
	}
	if !strings.HasPrefix(d, "[") && slices.Contains(strings.Split(d, "."), "") {
		return fmt.Errorf("%q is not a valid domain: empty label", d)
	}
	return nil
}

func (l *loader) validateListen(ls *Listen) {
	addrs := []struct{ key, val string }{
		{"listen.c2s", ls.C2S},
		{"listen.c2s_direct_tls", ls.C2SDirectTLS},
		{"listen.websocket", ls.WebSocket},
		{"listen.admin", ls.Admin},
		{"listen.s2s", ls.S2S},
		{"listen.s2s_direct_tls", ls.S2SDirectTLS},
	}
	for i, a := range addrs {
		if a.val == "" {
			continue
		}
		if err := checkAddr(a.val); err != nil {
			l.invalid(a.key, -1, "%v", err)
			continue
		}
		for _, b := range addrs[:i] {
			if b.val == a.val {
				l.invalid(a.key, -1, "address %q is already used by %s", a.val, b.key)
				break
			}
		}
	}
	if ls.WebSocketPlain && ls.WebSocket != "" && !isLoopback(ls.WebSocket) {
		l.invalid("listen.websocket_plain", -1,
			"may only be true when listen.websocket is a loopback address, not %q", ls.WebSocket)
	}
}

// checkAddr accepts "host:port" with a numeric port in 1..65535; the host
// may be empty (all interfaces).
func checkAddr(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not a valid host:port address: %v", a, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port must be a number between 1 and 65535", a)
	}
	return nil
}

// isLoopback reports whether the host of a valid address is "localhost" or a
// loopback IP.
func isLoopback(a string) bool {
	host, _, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// MaxKeepDays is the largest allowed archive.retention keep_days (100 years).
const MaxKeepDays = 36500

func (l *loader) validateRetention(ps []Retention, groups map[string]string) {
	for i, p := range ps {
		key := func(k string) string { return fmt.Sprintf("archive.retention[%d].%s", i, k) }
		switch {
		case p.Name == "":
			l.invalid(key("name"), -1, "every retention policy needs a name")
		case slices.IndexFunc(ps, func(q Retention) bool { return q.Name == p.Name }) < i:
			l.invalid(key("name"), -1, "duplicate retention policy name %q", p.Name)
		}
		switch p.Scope {
		case ScopeAll:
		case ScopeDomain:
			if p.Domain == "" {
				l.invalid(key("domain"), -1, `must be set when scope is "domain"`)
			} else if err := checkDomain(p.Domain); err != nil {
				l.invalid(key("domain"), -1, "%v", err)
			}
		case ScopeJIDs:
			if len(p.JIDs) == 0 {
				l.invalid(key("jids"), -1, `must list at least one bare JID when scope is "jids"`)
			}
		case ScopeGroups:
			if len(p.Groups) == 0 {
				l.invalid(key("groups"), -1, `must list at least one group when scope is "groups"`)
			}
			for _, g := range p.Groups {
				if _, ok := groups[g]; !ok {
					l.invalid(key("groups"), -1, "group %q is not defined in [groups]", g)
				}
			}
		default:
			l.invalid(key("scope"), -1, `must be "all", "domain", "jids" or "groups", got %q`, p.Scope)
		}
		if p.Scope != ScopeDomain && p.Domain != "" {
			l.invalid(key("domain"), -1, `only applies to scope "domain"`)
		}
		if p.Scope != ScopeJIDs && len(p.JIDs) > 0 {
			l.invalid(key("jids"), -1, `only applies to scope "jids"`)
		}
		if p.Scope != ScopeGroups && len(p.Groups) > 0 {
			l.invalid(key("groups"), -1, `only applies to scope "groups"`)
		}
		l.checkBareJIDs(key("jids"), p.JIDs)
		if p.KeepDays < 1 || p.KeepDays > MaxKeepDays {
			l.invalid(key("keep_days"), -1, "must be between 1 and %d, got %d", MaxKeepDays, p.KeepDays)
		}
	}
}

func (l *loader) validateHolds(hs []Hold) {
	for i, h := range hs {
		key := func(k string) string { return fmt.Sprintf("archive.hold[%d].%s", i, k) }
		switch {
		case h.Name == "":
			l.invalid(key("name"), -1, "every legal hold needs a name")
		case slices.IndexFunc(hs, func(q Hold) bool { return q.Name == h.Name }) < i:
			l.invalid(key("name"), -1, "duplicate legal hold name %q", h.Name)
		}
		if len(h.Custodians) == 0 {
			l.invalid(key("custodians"), -1, "must list at least one bare JID")
		}
		l.checkBareJIDs(key("custodians"), h.Custodians)
		var from, to time.Time
		var err error
		if h.From != "" {
			if from, err = time.Parse(time.DateOnly, h.From); err != nil {
				l.invalid(key("from"), -1, "%q is not a day (2006-01-02)", h.From)
			}
		}
		if h.To != "" {
			if to, err = time.Parse(time.DateOnly, h.To); err != nil {
				l.invalid(key("to"), -1, "%q is not a day (2006-01-02)", h.To)
			}
		}
		if !from.IsZero() && !to.IsZero() && to.Before(from) {
			l.invalid(key("to"), -1, "%s is before from (%s)", h.To, h.From)
		}
		if strings.TrimSpace(h.Reason) == "" {
			l.invalid(key("reason"), -1, "every legal hold needs a reason")
		}
	}
}

func (l *loader) validateWitnesses(ws []Witness) {
	names := map[string]int{}
	for i, w := range ws {
		key := func(k string) string { return fmt.Sprintf("archive.witness[%d].%s", i, k) }
		u, err := url.Parse(w.URL)
		switch {
		case w.URL == "":
			l.invalid(key("url"), -1, "every witness needs a url")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
			l.invalid(key("url"), -1, "%q is not an http:// or https:// URL without query", w.URL)
		case u.Scheme == "http" && !isLoopback(net.JoinHostPort(u.Hostname(), "0")):
			l.invalid(key("url"), -1, "plain http:// only to a loopback address, not %q: use https://", u.Hostname())
		}
		if w.Key == "" {
			l.invalid(key("key"), -1, "every witness needs its cosignature verifier key")
			continue
		}
		v, err := cosignature.NewVerifier(w.Key)
		if err != nil {
			l.invalid(key("key"), -1, "%v", err)
			continue
		}
		if j, dup := names[v.Name()]; dup {
			l.invalid(key("key"), -1, "witness %q is already archive.witness[%d]", v.Name(), j)
			continue
		}
		names[v.Name()] = i
	}
}

// checkBareJIDs accepts normalized bare JIDs without duplicates.
func (l *loader) checkBareJIDs(key string, list []string) {
	for i, v := range list {
		j, err := jid.Parse(v)
		switch {
		case err != nil:
			l.invalid(key, i, "%q is not a valid JID: %v", v, err)
		case j.Resourcepart() != "" || j.Localpart() == "":
			l.invalid(key, i, "%q is not a bare user JID (user@domain)", v)
		case j.String() != v:
			l.invalid(key, i, "%q is not normalized (write %q)", v, j.String())
		case slices.Index(list, v) < i:
			l.invalid(key, i, "duplicate JID %q", v)
		}
	}
}

// encryptionOf settles r.Encryption from the older encryption_required:
// true means "required" unless encryption is given too, and then it must
// say "required"; unset means "allowed".
func (l *loader) encryptionOf(key string, r *Rights) {
	_, given := l.idx.lookup(key + ".encryption")
	switch {
	case r.EncryptionRequired && given && r.Encryption != EncryptionRequired:
		l.invalid(key+".encryption", -1, `%q contradicts encryption_required = true: keep one of them (encryption replaces encryption_required)`, r.Encryption)
	case r.EncryptionRequired:
		r.Encryption = EncryptionRequired
	case r.Encryption == "":
		r.Encryption = EncryptionAllowed
	}
}
