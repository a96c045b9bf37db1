// Package config loads Palisade's TOML configuration file.
//
// Decoding is strict: unknown keys, values of the wrong type and invalid
// settings are all errors, and every error names the file, the line (and the
// column when known) and the dotted key it is about, for example
//
//	palisade.toml:12:1: limits.max_stanza_bytes: must be between 1024 and 16777216
//
// All the problems found in a file are reported together as one *Errors
// value, sorted by line.
//
// Modules get their own sections, [modules.NAME], decoded strictly into the
// typed struct that the module host supplies through a Registry.
package config

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Config is Palisade's whole configuration.
type Config struct {
	// Path is the file the configuration came from, "" for defaults.
	Path string `toml:"-"`
	// SHA256 is the hex SHA-256 of the document Parse decoded ("" for a
	// configuration built in code): what the journal records at start.
	SHA256 string `toml:"-"`
	// Server holds the served domains and the data directory.
	Server Server `toml:"server"`
	// Listen holds the listening addresses.
	Listen Listen `toml:"listen"`
	// TLS holds the certificate used by every TLS listener.
	TLS TLS `toml:"tls"`
	// Limits holds resource limits and timeouts.
	Limits Limits `toml:"limits"`
	// Log configures logging.
	Log Log `toml:"log"`
	// Auth configures authentication.
	Auth Auth `toml:"auth"`
	// Archive configures the compliance journal.
	Archive Archive `toml:"archive"`
	// Groups declares the Palisade groups: each name maps to a directory
	// group DN, or to "" for a group with internal members only. Internal
	// accounts may be put in any declared group (palisade user group add).
	Groups map[string]string `toml:"groups"`
	// Access holds the access rules.
	Access Access `toml:"access"`
	// Federation holds the server-to-server settings and the partners.
	Federation Federation `toml:"federation"`
	// Content holds the data loss prevention rules ([[content.rule]]).
	Content Content `toml:"content"`
	// Modules holds one Section per module, keyed by module name: every
	// module present in the file, plus, when the Registry implements
	// ModuleLister, every registered module absent from the file (with its
	// defaults and Line 0).
	Modules map[string]Section `toml:"-"`
}

// Server is the [server] section.
type Server struct {
	// Domains are the XMPP domains this server hosts (lowercase, normalized).
	Domains []string `toml:"domains"`
	// DataDir is the directory for the server's persistent data.
	DataDir string `toml:"data_dir"`
	// Admins are the bare JIDs, accounts of served domains, that may run
	// the administrative ad-hoc commands (XEP-0133).
	Admins []string `toml:"admins"`
	// Contacts are the domain's XEP-0157 contact addresses, published in
	// its disco#info.
	Contacts Contacts `toml:"contacts"`
}

// Contacts is the [server.contacts] section (XEP-0157): for each role,
// the URIs (mailto:, xmpp: or https:) to reach it. Empty lists publish
// nothing.
type Contacts struct {
	Abuse    []string `toml:"abuse"`
	Admin    []string `toml:"admin"`
	Feedback []string `toml:"feedback"`
	Sales    []string `toml:"sales"`
	Security []string `toml:"security"`
	Support  []string `toml:"support"`
}

// Listen is the [listen] section. An empty address turns the listener off.
type Listen struct {
	// C2S is the client-to-server listener using STARTTLS (RFC 6120).
	C2S string `toml:"c2s"`
	// C2SDirectTLS is the client-to-server listener using direct TLS (XEP-0368).
	C2SDirectTLS string `toml:"c2s_direct_tls"`
	// WebSocket is the RFC 7395 listener, serving /xmpp-websocket.
	WebSocket string `toml:"websocket"`
	// Admin is the administrative HTTP listener (/healthz).
	Admin string `toml:"admin"`
	// S2S is the server-to-server listener (RFC 6120, STARTTLS) for
	// partner servers; "" turns inbound federation off. It opens only
	// while some [[federation.partner]] is configured.
	S2S string `toml:"s2s"`
	// S2SDirectTLS is the server-to-server listener using direct TLS
	// (XEP-0368); "" turns it off.
	S2SDirectTLS string `toml:"s2s_direct_tls"`
	// WebSocketPlain serves ws:// instead of wss://; only allowed when the
	// WebSocket address is a loopback address (e.g. behind a reverse proxy).
	WebSocketPlain bool `toml:"websocket_plain"`
	// WebSocketURL is the ws:// or wss:// URL that XEP-0156 discovery
	// (/.well-known/host-meta) announces; "" derives it from the listener
	// and the requested domain. Set it behind a proxy.
	WebSocketURL string `toml:"websocket_url"`
}

// TLS is the [tls] section. Both files are set, or neither.
type TLS struct {
	// CertFile is the PEM certificate chain.
	CertFile string `toml:"cert_file"`
	// KeyFile is the PEM private key.
	KeyFile string `toml:"key_file"`
}

// Limits is the [limits] section.
type Limits struct {
	// MaxStanzaBytes is the largest stanza accepted, in bytes.
	MaxStanzaBytes int `toml:"max_stanza_bytes"`
	// AuthTimeout is how long an unauthenticated connection has to log in.
	AuthTimeout Duration `toml:"auth_timeout"`
	// RegistrationTimeout is how long a connection has to log in from the
	// moment it is handed an XEP-0077 in-band registration form (only when
	// [modules.register] allow = true), so that a user can read and fill
	// it in; once per connection, never shorter than AuthTimeout.
	RegistrationTimeout Duration `toml:"registration_timeout"`
	// IdleTimeout is how long a connection may stay silent before the
	// server pings it.
	IdleTimeout Duration `toml:"idle_timeout"`
	// PingTimeout is how long the server waits for a ping's answer before
	// closing the connection.
	PingTimeout Duration `toml:"ping_timeout"`
	// SendQueue is how many stanzas may be queued for one session before
	// the session is cut.
	SendQueue int `toml:"send_queue"`
	// ResumeTimeout is how long a detached XEP-0198 session may be resumed.
	ResumeTimeout Duration `toml:"resume_timeout"`
	// MaxOfflineMessages is how many offline messages are kept per user.
	MaxOfflineMessages int `toml:"max_offline_messages"`
	// MaxSessionsPerUser is how many sessions one account may have at once.
	MaxSessionsPerUser int `toml:"max_sessions_per_user"`

	// PreauthStanzaBytes is the largest element accepted before the
	// stream is authenticated.
	PreauthStanzaBytes int `toml:"preauth_stanza_bytes"`
	// MaxStanzaElements is how many elements one stanza may hold
	// (authenticated streams; before authentication the cap is 64).
	MaxStanzaElements int `toml:"max_stanza_elements"`
	// SendQueueBytes bounds the bytes queued for one session (stanzas not
	// yet acknowledged, stream-level answers, held presence), attached or
	// detached; past it the session is cut.
	SendQueueBytes int `toml:"send_queue_bytes"`
	// AccountQueueBytes bounds the bytes queued for all of one account's
	// sessions together.
	AccountQueueBytes int `toml:"account_queue_bytes"`
	// MaxOfflineBytes bounds one account's offline messages in bytes.
	MaxOfflineBytes int `toml:"max_offline_bytes"`
	// MaxPrivateItems and MaxPrivateBytes bound one account's XEP-0049
	// private XML storage (namespaces, bytes).
	MaxPrivateItems int `toml:"max_private_items"`
	MaxPrivateBytes int `toml:"max_private_bytes"`
	// MaxPEPNodes, MaxPEPNodeBytes and MaxPEPBytes bound one account's PEP
	// service: nodes, bytes of items in one node, bytes of all its items.
	MaxPEPNodes     int `toml:"max_pep_nodes"`
	MaxPEPNodeBytes int `toml:"max_pep_node_bytes"`
	MaxPEPBytes     int `toml:"max_pep_bytes"`
	// MaxVCardBytes bounds one account's vCard (XEP-0054).
	MaxVCardBytes int `toml:"max_vcard_bytes"`

	// MaxUnauthenticated caps the client connections that have not
	// finished SASL, over all listeners (0: no cap).
	MaxUnauthenticated int `toml:"max_unauthenticated"`
	// MaxUnauthenticatedPerIP caps them per source address (0: no cap).
	MaxUnauthenticatedPerIP int `toml:"max_unauthenticated_per_ip"`
	// ConnectionRatePerIP is how many new client connections one source
	// address may open per second, with ConnectionBurstPerIP at once
	// (0: no limit).
	ConnectionRatePerIP  float64 `toml:"connection_rate_per_ip"`
	ConnectionBurstPerIP int     `toml:"connection_burst_per_ip"`
	// ReadBytesPerSecond is the rate at which one session's stream is
	// read once it is bound, with ReadBurstBytes at once: past it reading
	// pauses (0: no limit).
	ReadBytesPerSecond int `toml:"read_bytes_per_second"`
	ReadBurstBytes     int `toml:"read_burst_bytes"`
}

// Log is the [log] section.
type Log struct {
	// Format is "json" or "console".
	Format string `toml:"format"`
	// Level is "debug", "info", "warn" or "error".
	Level string `toml:"level"`
	// AuditFile also appends every audit event to this file (mode 0600),
	// besides stderr; "" writes none.
	AuditFile string `toml:"audit_file"`
	// AuditFileMaxMB rotates AuditFile when a line would take it past this
	// many MiB (audit.log -> audit.log.1 -> ...); 0 never rotates.
	AuditFileMaxMB int `toml:"audit_file_max_mb"`
	// AuditFileKeep is how many rotated files are kept (1 to 1000).
	AuditFileKeep int `toml:"audit_file_keep"`
	// AuditSyslog also sends every audit event to syslog: "" none, "local"
	// for the local daemon, "udp://HOST:PORT", "tcp://HOST:PORT",
	// "unix:///PATH" or "unixgram:///PATH".
	AuditSyslog string `toml:"audit_syslog"`
}

// Auth is the [auth] section.
type Auth struct {
	// Providers are the authentication back ends, tried in order.
	Providers []string `toml:"providers"`
	// SCRAMIterations is the PBKDF2 iteration count for new SCRAM
	// credentials (at least 4096).
	SCRAMIterations int `toml:"scram_iterations"`
	// LockoutThreshold is how many failed logins of one address on one
	// account lock that address out of it for LockoutDuration, and how
	// many from addresses that never logged in to the account lock it for
	// all such addresses (server/lockout.go); 0 turns account lockout off.
	LockoutThreshold int `toml:"lockout_threshold"`
	// AddressThreshold is how many failed logins from one client address
	// lock it out of the accounts it has not logged in to; 0 turns it off.
	AddressThreshold int `toml:"address_threshold"`
	// LockoutDuration is how long a lockout lasts, and how long failures
	// are remembered.
	LockoutDuration Duration `toml:"lockout_duration"`
	// FailureDelay is the pause after an account's first failure; it
	// doubles with each further one, up to MaxFailureDelay.
	FailureDelay Duration `toml:"failure_delay"`
	// MaxFailureDelay caps the pause.
	MaxFailureDelay Duration `toml:"max_failure_delay"`
	// PasswordMinLength is the fewest characters a new password of an
	// internal account may have (registration, password change, CLI).
	PasswordMinLength int `toml:"password_min_length"`
	// PasswordRejectCommon refuses new passwords of internal accounts
	// that are in the built-in list of common passwords or a trivial
	// pattern (server/password).
	PasswordRejectCommon bool `toml:"password_reject_common"`
}

// Archive is the [archive] section: the compliance journal (every message
// and subscription change, appended before delivery, in a signed Merkle
// tree). Empty paths take their defaults under server.data_dir.
type Archive struct {
	// Enabled turns the journal on. Off, nothing is recorded.
	Enabled bool `toml:"enabled"`
	// JournalFile is the journal database (default data_dir/journal.db).
	JournalFile string `toml:"journal_file"`
	// CheckpointInterval is how often a signed checkpoint is issued when
	// the journal has grown; one is also issued on shutdown.
	CheckpointInterval Duration `toml:"checkpoint_interval"`
	// SigningKeyFile holds the checkpoint signing key, a note signer key
	// (golang.org/x/mod/sumdb/note, Ed25519). Created with mode 0600 when
	// missing (default data_dir/journal-signing.key).
	SigningKeyFile string `toml:"signing_key_file"`
	// OpenPGPKeyFile holds the OpenPGP key that signs export manifests,
	// created with mode 0600 when missing (default
	// data_dir/journal-openpgp.key).
	OpenPGPKeyFile string `toml:"openpgp_key_file"`
	// CheckpointDir receives every checkpoint as a file, so that they
	// leave the database; put it on another mount (default
	// data_dir/checkpoints).
	CheckpointDir string `toml:"checkpoint_dir"`
	// CheckpointSyslog also sends every checkpoint to syslog:
	// "udp://HOST:PORT", "tcp://HOST:PORT", "unix:///dev/log", or "local"
	// for the local daemon; "" sends none.
	CheckpointSyslog string `toml:"checkpoint_syslog"`
	// CheckpointURLs also POST every checkpoint to each http(s) URL (a
	// witness or a collector on another host).
	CheckpointURLs []string `toml:"checkpoint_urls"`
	// PurgeInterval is how often the running server removes record
	// content past retention (see Retention); default one day.
	PurgeInterval Duration `toml:"purge_interval"`
	// Retention are the [[archive.retention]] policies. Without any,
	// nothing is ever purged.
	Retention []Retention `toml:"retention"`
	// OfficerKeys are OpenPGP public key files of compliance officers.
	// When set, record content is stored encrypted (AES-256-GCM under a
	// data key per epoch, each epoch key wrapped to these keys), so that
	// server administrators cannot read the journal; metadata stays
	// searchable.
	OfficerKeys []string `toml:"officer_keys"`
	// Holds are the [[archive.hold]] legal holds placed by the file.
	Holds []Hold `toml:"hold"`
	// Witnesses are the [[archive.witness]] C2SP tlog-witnesses that
	// cosign each checkpoint consistent with the last one they saw.
	Witnesses []Witness `toml:"witness"`
}

// Witness is one [[archive.witness]]: a C2SP tlog-witness
// (https://c2sp.org/tlog-witness) asked to cosign every checkpoint.
type Witness struct {
	// URL is the witness's submission prefix; checkpoints are POSTed to
	// URL/add-checkpoint. http:// only to a loopback address.
	URL string `toml:"url"`
	// Key is the witness's cosignature verifier key (vkey,
	// name+hash+base64(0x04 || Ed25519 public key)); its name names the
	// witness in logs, audit events and the journal.
	Key string `toml:"key"`
	// Required (default true) marks /healthz bad while the witness fails.
	Required *bool `toml:"required"`
}

// IsRequired tells whether a failing witness marks the health status.
func (w Witness) IsRequired() bool { return w.Required == nil || *w.Required }

// Retention scopes.
const (
	ScopeAll    = "all"
	ScopeDomain = "domain"
	ScopeJIDs   = "jids"
	// ScopeGroups covers the members of Palisade groups ([groups]).
	ScopeGroups = "groups"
)

// Retention is one [[archive.retention]] policy: records of the parties in
// its scope are kept KeepDays days after they were accepted. The longest
// keep of every policy that applies to a record wins. A locked policy can
// never be shortened or removed: the journal records it, and start-up
// refuses a file that weakens it.
type Retention struct {
	// Name identifies the policy (unique); locked policies are matched by it.
	Name string `toml:"name"`
	// Scope is "all", "domain", "jids" or "groups".
	Scope string `toml:"scope"`
	// Domain is the domain whose users the policy covers (scope "domain").
	Domain string `toml:"domain"`
	// JIDs are the bare JIDs the policy covers (scope "jids").
	JIDs []string `toml:"jids"`
	// Groups are the Palisade groups ([groups] names) whose members the
	// policy covers (scope "groups"). The journal covers every account it
	// ever saw in one of them, so leaving a group never shortens what
	// was already kept.
	Groups []string `toml:"groups"`
	// KeepDays is how many days records are kept, at least 1.
	KeepDays int `toml:"keep_days"`
	// Locked makes the policy permanent: it may be lengthened, never
	// shortened, narrowed or removed.
	Locked bool `toml:"locked"`
}

// Hold is one [[archive.hold]] legal hold: records of the custodians (in
// the date range, when given) are never purged while it stands. Once
// recorded in the journal, removing it from the file does not release it;
// only `palisade archive hold release` does.
type Hold struct {
	// Name identifies the hold (unique).
	Name string `toml:"name"`
	// Custodians are the bare JIDs whose records are held.
	Custodians []string `toml:"custodians"`
	// From and To bound the held records by day (UTC, 2006-01-02, To
	// included); empty means unbounded.
	From string `toml:"from"`
	To   string `toml:"to"`
	// Reason says why (a matter, a case number).
	Reason string `toml:"reason"`
	// PlacedBy names who placed the hold.
	PlacedBy string `toml:"placed_by"`
}

// Access is the [access] section and its [[access.rule]] tables. Rules are
// evaluated in file order; the first whose group or jid matches the
// account applies, Default when none does.
type Access struct {
	// Default applies to accounts no rule matches.
	Default Rights `toml:"default"`
	// Rules are the [[access.rule]] tables, in file order.
	Rules []Rule `toml:"rule"`
}

// Rule is one access rule: whom it is for, and their rights.
type Rule struct {
	// Group is a Palisade group name (a key of [groups]); set it or JID.
	Group string `toml:"group"`
	// JID is one bare JID; set it or Group.
	JID string `toml:"jid"`
	Rights
}

// Rights are what an access rule grants. The zero value is permissive:
// every unset key has its default.
type Rights struct {
	// Login says whether the account may log in (default true).
	Login *bool `toml:"login"`
	// Networks are the CIDR ranges logins may come from; empty: any.
	Networks []string `toml:"networks"`
	// MaxSessions caps concurrent sessions; 0 means
	// limits.max_sessions_per_user.
	MaxSessions int `toml:"max_sessions"`
	// MaxSessionDuration ends a session that old (0: no limit). It is
	// read at login: a later rule change applies from the next login.
	MaxSessionDuration Duration `toml:"max_session_duration"`
	// Send says whether the account may send messages (default true);
	// false makes a read-only account, which still receives.
	Send *bool `toml:"send"`
	// Contacts is who may reach the account (modules/contacts): "roster"
	// (a subscription either way, a pending request the account sent, or
	// a shared-roster group), "organisation" (also every local account),
	// "partners" (also live federation partners) or "anyone" ("" means
	// "anyone").
	Contacts string `toml:"contacts"`
	// Subscriptions is who may send the account subscription requests:
	// "anyone" ("" too), "organisation", "partners" or "none".
	Subscriptions string `toml:"subscriptions"`
	// ContactsExempt are [groups] names whose members always reach the
	// account, whatever Contacts and Subscriptions say (a helpdesk).
	ContactsExempt []string `toml:"contacts_exempt"`
	// Federate says with which partners ([[federation.partner]]) the
	// account may exchange stanzas: true (default) every partner, false
	// none, or a list of partner names.
	Federate Federate `toml:"federate"`
	// FileTransfer is whom the account may transfer files with: "none",
	// "contacts" or "all" ("" means "all").
	FileTransfer string `toml:"file_transfer"`
	// EncryptionRequired refuses messages that carry plaintext or a
	// malformed end-to-end payload instead of OMEMO or OpenPGP
	// (server/encryption.go says what passes; default false).
	EncryptionRequired bool `toml:"encryption_required"`
	// Encryption is the end-to-end policy: "required" (what
	// encryption_required = true says), "allowed" or "forbidden" (OMEMO
	// and OpenPGP payloads, and publishing to their PEP nodes, are
	// refused, so that content rules can read the account's messages).
	// "" takes encryption_required's word.
	Encryption string `toml:"encryption"`
}

// End-to-end policies of Rights.Encryption.
const (
	EncryptionRequired  = "required"
	EncryptionAllowed   = "allowed"
	EncryptionForbidden = "forbidden"
)

// EncryptionPolicies returns the values accepted in encryption.
func EncryptionPolicies() []string {
	return []string{EncryptionRequired, EncryptionAllowed, EncryptionForbidden}
}

// EncryptionPolicy returns the end-to-end policy: "required" when the
// older encryption_required is true (validation refuses an encryption
// that says otherwise beside it), else Encryption, "allowed" when unset.
func (r Rights) EncryptionPolicy() string {
	switch {
	case r.EncryptionRequired:
		return EncryptionRequired
	case r.Encryption != "":
		return r.Encryption
	}
	return EncryptionAllowed
}

// File transfer scopes of Rights.FileTransfer.
const (
	FileTransferNone     = "none"
	FileTransferContacts = "contacts"
	FileTransferAll      = "all"
)

// FileTransferScopes returns the values accepted in file_transfer.
func FileTransferScopes() []string {
	return []string{FileTransferNone, FileTransferContacts, FileTransferAll}
}

// MayLogin reports the login right (true when unset).
func (r Rights) MayLogin() bool { return r.Login == nil || *r.Login }

// MaySend reports the right to send messages (true when unset).
func (r Rights) MaySend() bool { return r.Send == nil || *r.Send }

// MayFederate reports whether the account may address some other domain
// (true when unset): federate is not false.
func (r Rights) MayFederate() bool { return !r.Federate.Only || len(r.Federate.Partners) > 0 }

// MayFederateWith reports whether the account may exchange stanzas with
// the named partner.
func (r Rights) MayFederateWith(partner string) bool { return r.Federate.Allows(partner) }

// FileTransferScope returns FileTransfer, FileTransferAll when unset.
func (r Rights) FileTransferScope() string {
	if r.FileTransfer == "" {
		return FileTransferAll
	}
	return r.FileTransfer
}

// Describe lists the rights briefly, for the configuration summary:
// "login" or "no login", then only what differs from the defaults.
func (r Rights) Describe() string {
	parts := []string{"login"}
	if !r.MayLogin() {
		parts[0] = "no login"
	}
	if len(r.Networks) > 0 {
		parts = append(parts, "from "+strings.Join(r.Networks, " "))
	}
	if r.MaxSessions > 0 {
		parts = append(parts, fmt.Sprintf("%d sessions", r.MaxSessions))
	}
	if r.MaxSessionDuration > 0 {
		parts = append(parts, "sessions up to "+r.MaxSessionDuration.String())
	}
	if !r.MaySend() {
		parts = append(parts, "read-only")
	}
	if !r.MayFederate() {
		parts = append(parts, "no federation")
	} else if r.Federate.Only {
		parts = append(parts, "federation with "+strings.Join(r.Federate.Partners, ", "))
	}
	if ft := r.FileTransferScope(); ft != FileTransferAll {
		parts = append(parts, "file transfer "+ft)
	}
	if e := r.EncryptionPolicy(); e != EncryptionAllowed {
		parts = append(parts, "encryption "+e)
	}
	return strings.Join(parts, ", ")
}

// MinCheckpointInterval is the smallest allowed archive.checkpoint_interval.
const MinCheckpointInterval = time.Second

// Limits on a few values, shared by validation and the example file.
const (
	// MinStanzaBytes is the smallest allowed limits.max_stanza_bytes.
	MinStanzaBytes = 1024
	// MaxStanzaBytes is the largest allowed limits.max_stanza_bytes (16 MiB).
	MaxStanzaBytes = 16 << 20
	// MinSCRAMIterations is the smallest allowed auth.scram_iterations.
	MinSCRAMIterations = 4096
	// MinPasswordLength and MaxPasswordLength bound
	// auth.password_min_length.
	MinPasswordLength = 8
	MaxPasswordLength = 256
)

// KnownProviders returns the authentication provider names accepted in
// auth.providers.
func KnownProviders() []string { return []string{"internal", "ldap"} }

// Default returns the configuration used for every key the file leaves out.
func Default() *Config {
	return &Config{
		Server: Server{
			Domains: []string{"localhost"},
			DataDir: "./data",
			Admins:  []string{},
			Contacts: Contacts{Abuse: []string{}, Admin: []string{}, Feedback: []string{}, Sales: []string{},
				Security: []string{}, Support: []string{}},
		},
		Listen: Listen{
			C2S:          "127.0.0.1:5222",
			C2SDirectTLS: "127.0.0.1:5223",
			WebSocket:    "127.0.0.1:5280",
			Admin:        "127.0.0.1:5281",
			S2S:          "127.0.0.1:5269",
		},
		Limits: Limits{
			MaxStanzaBytes:     262144,
			AuthTimeout:        Duration(30 * time.Second),
			IdleTimeout:        Duration(300 * time.Second),
			PingTimeout:        Duration(30 * time.Second),
			SendQueue:          1000,
			ResumeTimeout:      Duration(300 * time.Second),
			MaxOfflineMessages: 1000,
			MaxSessionsPerUser: 10,
			PreauthStanzaBytes: 8192,
			MaxStanzaElements:  8192,
			SendQueueBytes:     8 << 20,
			AccountQueueBytes:  32 << 20,
			MaxOfflineBytes:    16 << 20,
			MaxPrivateItems:    64,
			MaxPrivateBytes:    1 << 20,
			MaxPEPNodes:        128,
			MaxPEPNodeBytes:    1 << 20,
			MaxPEPBytes:        8 << 20,
			MaxVCardBytes:      256 << 10,

			RegistrationTimeout: Duration(5 * time.Minute),

			MaxUnauthenticated:      2000,
			MaxUnauthenticatedPerIP: 50,
			ConnectionRatePerIP:     20,
			ConnectionBurstPerIP:    100,
			ReadBytesPerSecond:      1 << 20,
			ReadBurstBytes:          4 << 20,
		},
		Log: Log{Format: "json", Level: "info", AuditFileMaxMB: 100, AuditFileKeep: 10},
		Auth: Auth{
			Providers:        []string{"internal"},
			SCRAMIterations:  4096,
			LockoutThreshold: 10,
			AddressThreshold: 50,
			LockoutDuration:  Duration(15 * time.Minute),
			FailureDelay:     Duration(200 * time.Millisecond),
			MaxFailureDelay:  Duration(5 * time.Second),

			PasswordMinLength:    12,
			PasswordRejectCommon: true,
		},
		Archive: Archive{
			Enabled:            true,
			CheckpointInterval: Duration(time.Minute),
			CheckpointURLs:     []string{},
			PurgeInterval:      Duration(24 * time.Hour),
			OfficerKeys:        []string{},
		},
		Groups: map[string]string{},
		Access: Access{Default: Rights{Login: boolPtr(true), Networks: []string{}, Send: boolPtr(true),
			Contacts: ContactsAnyone, Subscriptions: ContactsAnyone, ContactsExempt: []string{},
			Federate: FederateAll(), FileTransfer: FileTransferAll, Encryption: EncryptionAllowed}, Rules: []Rule{}},
		Federation: defaultFederation(),
		Modules:    map[string]Section{},
	}
}

func boolPtr(b bool) *bool { return &b }

// Duration is a time.Duration written in the file as a Go duration string
// ("60s", "5m", "1h30m"). Convert with time.Duration(d).
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("invalid duration %q (write e.g. \"30s\", \"5m\" or \"1h\")", text)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).String()), nil
}

// String returns the duration in Go syntax, e.g. "5m0s".
func (d Duration) String() string { return time.Duration(d).String() }

// Registry tells the loader which module sections exist and how to decode them.
type Registry interface {
	// ModuleConfig returns a pointer to a new zero config struct for the
	// named module (with its defaults set), or ok=false if no such module is
	// registered.
	ModuleConfig(name string) (cfg any, ok bool)
}

// ModuleLister may be implemented by a Registry to list every registered
// module, so that modules absent from the file still get a Section with
// their defaults in Config.Modules.
type ModuleLister interface {
	// ModuleNames returns the names of all registered modules.
	ModuleNames() []string
}

// StaticRegistry is a Registry (and ModuleLister) built from a map of module
// names to functions returning a new config struct pointer with its defaults.
type StaticRegistry map[string]func() any

// ModuleConfig implements Registry.
func (r StaticRegistry) ModuleConfig(name string) (any, bool) {
	f, ok := r[name]
	if !ok || f == nil {
		return nil, false
	}
	return f(), true
}

// ModuleNames implements ModuleLister; the names are sorted.
func (r StaticRegistry) ModuleNames() []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Section is a decoded module section.
type Section struct {
	// Name is the module name, as in [modules.NAME].
	Name string
	// Value is the typed struct pointer returned by the Registry, decoded
	// strictly from the section.
	Value any
	// Line is the line of the section in the file, 0 if the section is
	// absent and Value holds the module's defaults.
	Line int
}

// Summary returns a short human-readable description of the configuration,
// one item per line, as printed by `palisade check-config`.
func (c *Config) Summary() string {
	var b strings.Builder
	row := func(label, value string) { fmt.Fprintf(&b, "%-17s %s\n", label+":", value) }
	addr := func(a, note string) string {
		if a == "" {
			return "off"
		}
		if note != "" {
			return a + " (" + note + ")"
		}
		return a
	}
	if c.Path != "" {
		row("config file", c.Path)
	}
	row("domains", orNone(strings.Join(c.Server.Domains, ", ")))
	row("data dir", c.Server.DataDir)
	row("c2s (STARTTLS)", addr(c.Listen.C2S, ""))
	row("c2s (direct TLS)", addr(c.Listen.C2SDirectTLS, ""))
	scheme := "wss"
	if c.Listen.WebSocketPlain {
		scheme = "ws, plain"
	}
	row("websocket", addr(c.Listen.WebSocket, scheme+", /xmpp-websocket"))
	row("admin http", addr(c.Listen.Admin, "/healthz"))
	if c.TLS.CertFile != "" {
		row("tls", "cert "+c.TLS.CertFile+", key "+c.TLS.KeyFile)
	} else {
		row("tls", "no certificate configured")
	}
	row("auth providers", orNone(strings.Join(c.Auth.Providers, ", ")))
	if c.Auth.LockoutThreshold > 0 {
		row("lockout", fmt.Sprintf("after %d failed logins (address: %d) for %s", c.Auth.LockoutThreshold, c.Auth.AddressThreshold, c.Auth.LockoutDuration))
	} else {
		row("lockout", "off")
	}
	if len(c.Groups) > 0 {
		gs := make([]string, 0, len(c.Groups))
		for g := range c.Groups {
			gs = append(gs, g)
		}
		sort.Strings(gs)
		row("groups", strings.Join(gs, ", "))
	}
	row("access rules", fmt.Sprintf("%d, default: %s", len(c.Access.Rules), c.Access.Default.Describe()))
	row("log", c.Log.Format+", level "+c.Log.Level)
	if c.Archive.Enabled {
		row("archive", "journal on, checkpoint every "+c.Archive.CheckpointInterval.String())
		for _, p := range c.Archive.Retention {
			lock := ""
			if p.Locked {
				lock = ", locked"
			}
			row("retention", fmt.Sprintf("%s: %s, %d days%s", p.Name, p.ScopeString(), p.KeepDays, lock))
		}
		for _, h := range c.Archive.Holds {
			row("legal hold", h.Name+": "+strings.Join(h.Custodians, ", "))
		}
		for _, w := range c.Archive.Witnesses {
			name, _, _ := strings.Cut(w.Key, "+")
			req := "required"
			if !w.IsRequired() {
				req = "optional"
			}
			row("witness", name+" at "+w.URL+" ("+req+")")
		}
	} else {
		row("archive", "off")
	}
	names := make([]string, 0, len(c.Modules))
	for n, s := range c.Modules {
		if s.Line == 0 {
			n += " (defaults)"
		}
		names = append(names, n)
	}
	sort.Strings(names)
	row("modules", orNone(strings.Join(names, ", ")))
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// ScopeString describes the policy's scope, e.g. "domain example.com".
func (p Retention) ScopeString() string {
	switch p.Scope {
	case ScopeDomain:
		return "domain " + p.Domain
	case ScopeJIDs:
		return "jids " + strings.Join(p.JIDs, ", ")
	case ScopeGroups:
		return "groups " + strings.Join(p.Groups, ", ")
	}
	return p.Scope
}
