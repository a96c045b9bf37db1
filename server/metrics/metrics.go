// Package metrics holds Palisade's Prometheus metrics: one private
// registry per server (no global default registry), the core's
// collectors, and the Registerer modules add their own collectors to.
// The admin listener serves Handler at GET /metrics.
//
// No label value ever holds a JID, a user's domain or a resource: every
// label is drawn from a bounded set (stanza kinds, transports, SASL
// mechanisms, policy names, stanza error conditions), and a value outside
// its set is counted as "other".
//
// The counting methods are safe on a nil *Metrics (they do nothing), so
// the layers that count (c2s sessions, the router) work unchanged in
// tests that build them without metrics.
package metrics

import (
	"net/http"

	"github.com/palisade-im/palisade/server/stanza"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every Palisade metric name.
const Namespace = "palisade"

// Other is the label value of anything outside a label's bounded set.
const Other = "other"

// Transports are the values of the transport label: "tcp" is the c2s
// port with STARTTLS, "tls" direct TLS (XEP-0368), "websocket" RFC 7395.
var Transports = []string{"tcp", "tls", "websocket"}

// Mechanisms are the SASL mechanism label values Palisade can offer;
// whatever else a client names is counted as Other.
var Mechanisms = []string{
	"PLAIN",
	"SCRAM-SHA-1", "SCRAM-SHA-1-PLUS",
	"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
	"SCRAM-SHA-512", "SCRAM-SHA-512-PLUS",
	"EXTERNAL",
}

// Login results (the result label of palisade_logins_total).
const (
	LoginSuccess = "success"
	LoginFailure = "failure"
	LoginLocked  = "locked"
)

// Conditions are the reason label values of policy denials: the RFC 6120
// stanza error conditions (section 8.3.3), and "dropped" for a denial
// that answers nothing.
var Conditions = []string{
	"bad-request", "conflict", "feature-not-implemented", "forbidden", "gone",
	"internal-server-error", "item-not-found", "jid-malformed", "not-acceptable",
	"not-allowed", "not-authorized", "policy-violation", "recipient-unavailable",
	"redirect", "registration-required", "remote-server-not-found",
	"remote-server-timeout", "resource-constraint", "service-unavailable",
	"subscription-required", "undefined-condition", "unexpected-request",
	Dropped,
}

// Dropped is the reason of a denial that drops the stanza silently.
const Dropped = "dropped"

// kinds are the stanza kinds counted, indexed by stanza.Kind.
var kinds = [...]stanza.Kind{stanza.Message, stanza.Presence, stanza.IQ}

// Metrics is one server's registry and the core's collectors.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	sessions *prometheus.GaugeVec
	in, out  *prometheus.CounterVec
	denials  *prometheus.CounterVec
	logins   *prometheus.CounterVec

	// Pre-resolved children: the stanza path only adds to them.
	inBy, outBy [stanza.IQ + 1]prometheus.Counter
	sessBy      map[[2]string]prometheus.Gauge
	loginBy     map[[2]string]prometheus.Counter

	// policies are the policy label values (the chain's links).
	policies map[string]bool
}

// New builds the registry with the core's collectors, the Go runtime's
// and the process's. policies are the names the policy label may take
// (the chain's links, server/chain.go, with the core's "access" and
// "federation"); any other name is counted as Other.
func New(policies []string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "sessions_open",
			Help: "Client sessions bound now (attached, or detached awaiting XEP-0198 resumption), by the transport they were bound on and their SASL mechanism.",
		}, []string{"transport", "mechanism"}),
		in: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "stanzas_in_total",
			Help: "Stanzas received from bound client sessions, by kind.",
		}, []string{"kind"}),
		out: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "stanzas_out_total",
			Help: "Stanzas queued for delivery to client sessions, by kind.",
		}, []string{"kind"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "policy_denials_total",
			Help: "Stanzas denied by the policy chain, by policy and reason (the stanza error condition answered, or dropped).",
		}, []string{"policy", "reason"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "logins_total",
			Help: "Client SASL logins by result (success, failure, locked) and mechanism.",
		}, []string{"result", "mechanism"}),
		sessBy:   map[[2]string]prometheus.Gauge{},
		loginBy:  map[[2]string]prometheus.Counter{},
		policies: map[string]bool{},
	}
	m.reg.MustRegister(m.sessions, m.in, m.out, m.denials, m.logins,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, k := range kinds {
		m.inBy[k] = m.in.WithLabelValues(k.String())
		m.outBy[k] = m.out.WithLabelValues(k.String())
	}
	mechs := append(append([]string(nil), Mechanisms...), Other)
	for _, mech := range mechs {
		for _, t := range Transports {
			m.sessBy[[2]string{t, mech}] = m.sessions.WithLabelValues(t, mech)
		}
		for _, r := range []string{LoginSuccess, LoginFailure, LoginLocked} {
			m.loginBy[[2]string{r, mech}] = m.logins.WithLabelValues(r, mech)
		}
	}
	for _, p := range policies {
		m.policies[p] = true
	}
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// Registerer is where modules register their collectors (module.Host's
// Metrics). Their names start with Namespace too.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// Gatherer is the registry, for tests and the handler.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler { return m.handler }

// StanzaIn counts a stanza received from a client session.
func (m *Metrics) StanzaIn(k stanza.Kind) {
	if m != nil && k >= stanza.Message && k <= stanza.IQ {
		m.inBy[k].Inc()
	}
}

// StanzaOut counts a stanza queued for a client session.
func (m *Metrics) StanzaOut(k stanza.Kind) {
	if m != nil && k >= stanza.Message && k <= stanza.IQ {
		m.outBy[k].Inc()
	}
}

// Session is one open session's place in palisade_sessions_open; Close
// takes it out. The zero Session (from a nil *Metrics) does nothing.
type Session struct{ g prometheus.Gauge }

// Close counts the session as ended. Call it once.
func (s Session) Close() {
	if s.g != nil {
		s.g.Dec()
	}
}

// SessionOpened counts a bound session on transport (one of Transports)
// with SASL mechanism mech, until the returned Session's Close.
func (m *Metrics) SessionOpened(transport, mech string) Session {
	if m == nil {
		return Session{}
	}
	g, ok := m.sessBy[[2]string{transport, mech}]
	if !ok {
		g = m.sessBy[[2]string{transport, Other}]
	}
	if g == nil { // an unknown transport: a programming error, still counted
		g = m.sessions.WithLabelValues(Other, boundedMech(mech))
	}
	g.Inc()
	return Session{g: g}
}

// Login counts a SASL login attempt's outcome: result is LoginSuccess,
// LoginFailure or LoginLocked; mech is the mechanism the client named
// (counted as Other when it is not one of Mechanisms).
func (m *Metrics) Login(result, mech string) {
	if m == nil {
		return
	}
	if c, ok := m.loginBy[[2]string{result, boundedMech(mech)}]; ok {
		c.Inc()
	}
}

func boundedMech(mech string) string {
	for _, k := range Mechanisms {
		if k == mech {
			return mech
		}
	}
	return Other
}

// Denied counts a policy denial: policy is the link that denied (one of
// the names given to New, else Other) and reason its stanza error
// condition ("" for a silent drop: Dropped; an undefined one: Other).
func (m *Metrics) Denied(policy string, reason stanza.Condition) {
	if m == nil {
		return
	}
	if !m.policies[policy] {
		policy = Other
	}
	r := Dropped
	if reason != "" {
		r = Other
		for _, c := range Conditions {
			if c == string(reason) {
				r = c
				break
			}
		}
	}
	// Off the stanza path's common case: a denial resolves its child.
	m.denials.WithLabelValues(policy, r).Inc()
}
