package config

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds of the [federation] settings, shared by validation and the
// example file.
const (
	MinConnectTimeout = time.Second
	MaxConnectTimeout = 5 * time.Minute
	MinFedIdleTimeout = 10 * time.Second
	MaxQueueStanzas   = 100000
	MinQueueBytes     = 1024
	MaxQueueBytes     = 64 << 20
	MaxInboundStreams = 100000
	// MinDialbackSecret is the fewest characters a dialback_secret may have.
	MinDialbackSecret = 16
)

// validateFederation checks [federation] and its [[federation.partner]]
// tables. served are the [server] domains, which no partner may name.
func (l *loader) validateFederation(f *Federation, served []string) {
	const k = "federation."
	if n := utf8.RuneCountInString(f.DialbackSecret); n > 0 && n < MinDialbackSecret {
		l.invalid(k+"dialback_secret", -1, `must be "" (generated) or at least %d characters, got %d`, MinDialbackSecret, n)
	}
	if d := time.Duration(f.ConnectTimeout); d < MinConnectTimeout || d > MaxConnectTimeout {
		l.invalid(k+"connect_timeout", -1, "must be between %s and %s, got %s", MinConnectTimeout, MaxConnectTimeout, f.ConnectTimeout)
	}
	if d := time.Duration(f.IdleTimeout); d < MinFedIdleTimeout {
		l.invalid(k+"idle_timeout", -1, "must be at least %s, got %s", MinFedIdleTimeout, f.IdleTimeout)
	}
	switch {
	case f.RetryMin <= 0:
		l.invalid(k+"retry_min", -1, "must be a positive duration, got %s", f.RetryMin)
	case f.RetryMax <= 0:
		l.invalid(k+"retry_max", -1, "must be a positive duration, got %s", f.RetryMax)
	case f.RetryMin > f.RetryMax:
		l.invalid(k+"retry_max", -1, "must be at least federation.retry_min (%s), got %s", f.RetryMin, f.RetryMax)
	}
	if f.QueueStanzas < 1 || f.QueueStanzas > MaxQueueStanzas {
		l.invalid(k+"queue_stanzas", -1, "must be between 1 and %d, got %d", MaxQueueStanzas, f.QueueStanzas)
	}
	if f.QueueBytes < MinQueueBytes || f.QueueBytes > MaxQueueBytes {
		l.invalid(k+"queue_bytes", -1, "must be between %d and %d, got %d", MinQueueBytes, MaxQueueBytes, f.QueueBytes)
	}
	if f.MaxInbound < 1 || f.MaxInbound > MaxInboundStreams {
		l.invalid(k+"max_inbound_streams", -1, "must be between 1 and %d, got %d", MaxInboundStreams, f.MaxInbound)
	}
	l.checkRate("federation", f.Rate, f.Burst, 0)

	owner := map[string]int{} // domain -> index of the partner naming it
	for i, p := range f.Partners {
		l.validatePartner(f, i, &p, served, owner)
	}
}

// checkRate checks a rate and its burst under section; inherited is the
// burst that applies when burst is 0 (a partner keeps [federation]'s).
func (l *loader) checkRate(section string, rate float64, burst, inherited int) {
	switch {
	case math.IsNaN(rate) || math.IsInf(rate, 0):
		l.invalid(section+".rate", -1, "must be a finite number of stanzas per second, got %v", rate)
		return
	case rate < 0:
		l.invalid(section+".rate", -1, "must be 0 (no limit) or more stanzas per second, got %v", rate)
	}
	switch {
	case burst < 0:
		l.invalid(section+".burst", -1, "must be 0 or more, got %d", burst)
	case rate > 0 && burst == 0 && inherited < 1:
		l.invalid(section+".burst", -1, "must be at least 1 when rate is above 0, got 0")
	}
}

// validatePartner checks federation.partner[i]; owner maps each domain
// seen so far to the partner naming it.
func (l *loader) validatePartner(f *Federation, i int, p *Partner, served []string, owner map[string]int) {
	key := func(k string) string { return fmt.Sprintf("federation.partner[%d].%s", i, k) }
	switch {
	case p.Name == "":
		l.invalid(key("name"), -1, "every partner needs a name (access rules and audit events use it)")
	case strings.Trim(p.Name, "abcdefghijklmnopqrstuvwxyz0123456789._-") != "":
		l.invalid(key("name"), -1, "%q may only hold a-z, 0-9, \".\", \"_\" and \"-\"", p.Name)
	case slices.IndexFunc(f.Partners, func(q Partner) bool { return q.Name == p.Name }) < i:
		l.invalid(key("name"), -1, "duplicate partner name %q", p.Name)
	}

	if len(p.Domains) == 0 {
		l.invalid(key("domains"), -1, "must list at least one domain")
	}
	for j, d := range p.Domains {
		if err := checkDomain(d); err != nil {
			l.invalid(key("domains"), j, "%v", err)
			continue
		}
		if slices.Contains(served, d) {
			l.invalid(key("domains"), j, "%q is served by this server (server.domains), it cannot be a partner's", d)
			continue
		}
		if o, dup := owner[d]; dup {
			if o == i {
				l.invalid(key("domains"), j, "duplicate domain %q", d)
			} else {
				l.invalid(key("domains"), j, "domain %q is already federation.partner[%d] (%q)", d, o, f.Partners[o].Name)
			}
			continue
		}
		owner[d] = i
	}

	if p.CAFile != "" {
		if err := checkCAFile(p.CAFile); err != nil {
			l.invalid(key("ca_file"), -1, "%v", err)
		}
	}
	for j, pin := range p.SPKIPins {
		if err := checkPin(pin); err != nil {
			l.invalid(key("spki_pins"), j, "%v", err)
		} else if slices.Index(p.SPKIPins, pin) < j {
			l.invalid(key("spki_pins"), j, "duplicate pin %q", pin)
		}
	}

	for j, e := range p.Endpoints {
		if err := checkAddr(e); err != nil {
			l.invalid(key("endpoints"), j, "%v", err)
			continue
		}
		switch host, _, _ := net.SplitHostPort(e); {
		case host == "":
			l.invalid(key("endpoints"), j, "%q names no host", e)
		case slices.Index(p.Endpoints, e) < j:
			l.invalid(key("endpoints"), j, "duplicate endpoint %q", e)
		}
	}
	if p.DirectTLS && len(p.Endpoints) == 0 {
		l.invalid(key("direct_tls"), -1, "only applies with endpoints (without them, _xmpps-server SRV records say where direct TLS is)")
	}

	if p.Kinds != nil && len(p.Kinds) == 0 {
		l.invalid(key("kinds"), -1, "must list at least one of %s (leave it out for all)", strings.Join(PartnerKinds(), ", "))
	}
	known := PartnerKinds()
	for j, kind := range p.Kinds {
		switch {
		case !slices.Contains(known, kind):
			l.invalid(key("kinds"), j, "unknown kind %q (known: %s)", kind, strings.Join(known, ", "))
		case slices.Index(p.Kinds, kind) < j:
			l.invalid(key("kinds"), j, "duplicate kind %q", kind)
		}
	}
	l.checkRate(fmt.Sprintf("federation.partner[%d]", i), p.Rate, p.Burst, f.Burst)
}

// checkCAFile accepts a readable PEM file holding at least one
// certificate, every one of which parses. A relative path is relative to
// the working directory, as tls.cert_file is.
func checkCAFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read %q: %v", path, unwrapPathError(err))
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		n++
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("%q: certificate %d does not parse: %v", path, n, err)
		}
	}
	if n == 0 {
		return fmt.Errorf("%q holds no PEM certificate", path)
	}
	return nil
}

// unwrapPathError drops the *fs.PathError's repetition of the path.
func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// checkPin accepts "sha256/" and the standard base64 of 32 bytes, the
// SHA-256 of a SubjectPublicKeyInfo (as HPKP and curl's --pinnedpubkey
// write it).
func checkPin(pin string) error {
	b64, ok := strings.CutPrefix(pin, "sha256/")
	if !ok {
		return fmt.Errorf(`%q does not start with "sha256/"`, pin)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(raw) != 32 {
		return fmt.Errorf(`%q is not "sha256/" and the base64 of 32 bytes (the SHA-256 of a SubjectPublicKeyInfo)`, pin)
	}
	return nil
}
