package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/palisade-im/palisade/server/config"
)

// federationSummary is check-config's federation block: the s2s
// listeners, then each partner: its domains, how it must authenticate,
// where its servers are, what it may exchange and its rate limit.
func federationSummary(c *config.Config) string {
	var b strings.Builder
	row := func(label, value string) { fmt.Fprintf(&b, "%-17s %s\n", label+":", value) }
	more := func(value string) { fmt.Fprintf(&b, "%-17s %s\n", "", value) }
	f := &c.Federation
	if len(f.Partners) == 0 {
		row("federation", "off (no partner)")
		return b.String()
	}
	addr := func(a string) string {
		if a == "" {
			return "off"
		}
		return a
	}
	row("s2s (STARTTLS)", addr(c.Listen.S2S))
	row("s2s (direct TLS)", addr(c.Listen.S2SDirectTLS))
	for _, p := range f.Partners {
		row("partner", p.Name+": "+strings.Join(p.Domains, ", "))
		auth := "PKIX with the system roots"
		if p.CAFile != "" {
			auth = "PKIX with ca_file " + p.CAFile
		}
		if n := len(p.SPKIPins); n > 0 {
			auth += ", " + plural(n, "SPKI pin")
		}
		if p.Dialback {
			auth += ", dialback allowed"
		} else {
			auth += ", no dialback"
		}
		more("auth: " + auth)
		if len(p.Endpoints) > 0 {
			mode := "STARTTLS"
			if p.DirectTLS {
				mode = "direct TLS"
			}
			more("endpoints: " + strings.Join(p.Endpoints, ", ") + " (" + mode + ")")
		} else {
			more("endpoints: DNS SRV")
		}
		kinds := config.PartnerKinds()
		if len(p.Kinds) > 0 {
			kinds = p.Kinds
		}
		more(fmt.Sprintf("kinds: %s; files %s, rooms %s, encryption_required %s",
			strings.Join(kinds, ", "), yesNo(p.Files), yesNo(p.Rooms), yesNo(p.EncryptionRequired)))
		more("rate: " + partnerRate(f, &p))
	}
	return b.String()
}

// partnerRate describes the inbound rate limit that applies to p.
func partnerRate(f *config.Federation, p *config.Partner) string {
	rate, burst, from := p.Rate, p.Burst, ""
	if rate == 0 {
		rate, from = f.Rate, " (federation.rate)"
	}
	if burst == 0 {
		burst = f.Burst
	}
	if rate == 0 {
		return "no limit"
	}
	return strconv.FormatFloat(rate, 'f', -1, 64) + " stanzas/s, burst " + strconv.Itoa(burst) + from
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// FederationStream is one live server-to-server stream, as GET
// /admin/federation lists it.
type FederationStream struct {
	Peer         string `json:"peer"`
	Partner      string `json:"partner"`
	Direction    string `json:"direction"` // "in" or "out"
	Auth         string `json:"auth"`      // "sasl-external" or "dialback"
	Local        string `json:"local"`
	RemoteAddr   string `json:"remote_addr"`
	TLS          string `json:"tls"`
	CertNotAfter string `json:"cert_not_after"` // RFC 3339
	Established  string `json:"established"`    // RFC 3339
	StanzasIn    int64  `json:"stanzas_in"`
	StanzasOut   int64  `json:"stanzas_out"`
}

// federation runs `palisade federation status [--json]`.
func (e *env) federation(args []string) error {
	const use = "usage: palisade federation status [--json]"
	if len(args) == 0 || args[0] != "status" {
		return usageErr(use)
	}
	asJSON := false
	for _, a := range args[1:] {
		if a != "--json" && a != "-json" {
			return usageErr(use)
		}
		asJSON = true
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	status, body, err := adminRequest(context.Background(), cfg, http.MethodGet, "/admin/federation")
	if err != nil {
		return err
	}
	var res struct {
		Streams []FederationStream `json:"streams"`
	}
	switch {
	case status == http.StatusNotFound:
		return fmt.Errorf("admin listener %s: the running server has no /admin/federation (a build without federation?)", cfg.Listen.Admin)
	case status != http.StatusOK:
		return fmt.Errorf("admin listener %s: %d: %s", cfg.Listen.Admin, status, strings.TrimSpace(string(body)))
	case json.Unmarshal(body, &res) != nil:
		return fmt.Errorf("admin listener %s: /admin/federation answered something that is not its JSON: %.200q", cfg.Listen.Admin, body)
	}
	if asJSON {
		_, err := e.stdout.Write(body)
		if err == nil && !strings.HasSuffix(string(body), "\n") {
			_, err = fmt.Fprintln(e.stdout)
		}
		return err
	}
	printStreams(e, res.Streams, time.Now())
	return nil
}

// printStreams writes the streams as a table, by peer and direction.
func printStreams(e *env, streams []FederationStream, now time.Time) {
	if len(streams) == 0 {
		fmt.Fprintln(e.stdout, "no federation streams")
		return
	}
	slices.SortStableFunc(streams, func(a, b FederationStream) int {
		if c := strings.Compare(a.Peer, b.Peer); c != 0 {
			return c
		}
		return strings.Compare(a.Direction, b.Direction)
	})
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tPARTNER\tDIR\tAUTH\tREMOTE\tTLS\tESTABLISHED\tCERTIFICATE EXPIRES\tIN\tOUT")
	for _, s := range streams {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", dash(s.Peer), dash(s.Partner), dash(s.Direction), dash(s.Auth),
			dash(s.RemoteAddr), dash(s.TLS), dash(established(s.Established)), certExpiry(s.CertNotAfter, now), s.StanzasIn, s.StanzasOut)
	}
	_ = tw.Flush()
}

// certExpiry writes a certificate's notAfter with the whole days left.
func certExpiry(notAfter string, now time.Time) string {
	if notAfter == "" {
		return "-"
	}
	t, err := time.Parse(time.RFC3339, notAfter)
	if err != nil {
		return notAfter + " (unreadable)"
	}
	if t.IsZero() {
		return "-" // Go's zero time: no certificate (dialback)
	}
	day := t.UTC().Format(time.DateOnly)
	left := t.Sub(now)
	if left < 0 {
		return day + " (expired " + plural(int(-left/(24*time.Hour)), "day") + " ago)"
	}
	return day + " (" + plural(int(left/(24*time.Hour)), "day") + " left)"
}

// established writes an RFC 3339 time in UTC to the second.
func established(ts string) string {
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil || t.IsZero() {
		return ts
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
