package config

import "slices"

// Federation is the [federation] section: server-to-server streams
// (RFC 6120) with partner organisations only. There is no federation
// without a partner entry: a domain no [[federation.partner]] names is
// refused in both directions.
type Federation struct {
	// DialbackSecret keys XEP-0220 dialback keys; "" makes the server
	// generate one in data_dir/dialback.secret (0600) on first use.
	DialbackSecret string `toml:"dialback_secret"`
	// ConnectTimeout bounds dialing a peer and negotiating the stream
	// (TLS, authentication) in both directions.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// IdleTimeout closes a stream that carried no stanza for that long.
	IdleTimeout Duration `toml:"idle_timeout"`
	// QueueStanzas and QueueBytes bound what waits for one peer domain
	// while its outgoing stream is being established; past them a stanza
	// is bounced at once (resource-constraint).
	QueueStanzas int `toml:"queue_stanzas"`
	QueueBytes   int `toml:"queue_bytes"`
	// RetryMin and RetryMax bound the backoff between failed attempts to
	// reach a peer domain; a stanza sent meanwhile is bounced at once.
	RetryMin Duration `toml:"retry_min"`
	RetryMax Duration `toml:"retry_max"`
	// MaxInbound caps incoming server streams at once.
	MaxInbound int `toml:"max_inbound_streams"`
	// Rate and Burst are the default inbound rate limit of one partner
	// (stanzas per second over all its streams; 0: none).
	Rate  float64 `toml:"rate"`
	Burst int     `toml:"burst"`
	// Partners are the [[federation.partner]] tables, in file order.
	Partners []Partner `toml:"partner"`
}

// Kinds of stanza a partner may exchange (Partner.Kinds).
const (
	PartnerMessage  = "message"
	PartnerPresence = "presence"
	PartnerIQ       = "iq"
)

// PartnerKinds returns the values accepted in federation.partner.kinds.
func PartnerKinds() []string { return []string{PartnerMessage, PartnerPresence, PartnerIQ} }

// Partner is one [[federation.partner]] table: an organisation whose
// domains may federate with this server, how they must authenticate and
// what they may exchange.
type Partner struct {
	// Name names the partner in access rules (federate = ["name"]), logs
	// and audit events.
	Name string `toml:"name"`
	// Domains are the partner's XMPP domains (lowercase, normalized).
	Domains []string `toml:"domains"`
	// CAFile is a PEM bundle of the CAs its certificates must chain to;
	// "" uses the system roots.
	CAFile string `toml:"ca_file"`
	// SPKIPins, when set, are the only keys its certificates may carry:
	// "sha256/" and the base64 SHA-256 of the SubjectPublicKeyInfo.
	SPKIPins []string `toml:"spki_pins"`
	// Dialback allows XEP-0220 dialback when its certificate does not
	// verify (never without TLS). Off by default.
	Dialback bool `toml:"dialback"`
	// Endpoints pin where its servers are (host:port, tried in order, no
	// DNS SRV lookup); empty resolves _xmpps-server and _xmpp-server SRV
	// records with the A/AAAA fallback on port 5269.
	Endpoints []string `toml:"endpoints"`
	// DirectTLS says the pinned endpoints speak XEP-0368 direct TLS
	// instead of STARTTLS.
	DirectTLS bool `toml:"direct_tls"`
	// Kinds are the stanza kinds it may exchange: "message", "presence"
	// (subscriptions included) and "iq"; all three by default.
	Kinds []string `toml:"kinds"`
	// Files says whether files may be shared with it (read by the file
	// modules); off by default.
	Files bool `toml:"files"`
	// Rooms says whether it may join local rooms and local users its
	// rooms (read by the room module); off by default.
	Rooms bool `toml:"rooms"`
	// EncryptionRequired refuses messages to and from it that are not
	// end-to-end encrypted (as access.rule encryption_required).
	EncryptionRequired bool `toml:"encryption_required"`
	// Rate and Burst override [federation] rate and burst for it; 0
	// keeps them.
	Rate  float64 `toml:"rate"`
	Burst int     `toml:"burst"`
}

// Allows reports whether the partner may exchange stanzas of kind (one of
// PartnerKinds).
func (p *Partner) Allows(kind string) bool {
	return len(p.Kinds) == 0 || slices.Contains(p.Kinds, kind)
}

// Partner returns the partner entry that names domain, nil when none does.
func (f *Federation) Partner(domain string) *Partner {
	for i := range f.Partners {
		if slices.Contains(f.Partners[i].Domains, domain) {
			return &f.Partners[i]
		}
	}
	return nil
}

// defaultFederation is the [federation] every file starts from.
func defaultFederation() Federation {
	return Federation{
		ConnectTimeout: Duration(30e9),
		IdleTimeout:    Duration(600e9),
		QueueStanzas:   1000,
		QueueBytes:     4 << 20,
		RetryMin:       Duration(5e9),
		RetryMax:       Duration(300e9),
		MaxInbound:     256,
		Burst:          0,
		Partners:       []Partner{},
	}
}
