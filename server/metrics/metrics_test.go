package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/stanza"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestStanzaCounters(t *testing.T) {
	m := New(nil)
	m.StanzaIn(stanza.Message)
	m.StanzaIn(stanza.Message)
	m.StanzaIn(stanza.IQ)
	m.StanzaOut(stanza.Presence)
	m.StanzaIn(stanza.Kind(0))  // not a stanza: not counted
	m.StanzaOut(stanza.Kind(9)) // nor this
	for _, c := range []struct {
		vec  *prometheus.CounterVec
		kind string
		want float64
	}{
		{m.in, "message", 2}, {m.in, "iq", 1}, {m.in, "presence", 0},
		{m.out, "presence", 1}, {m.out, "message", 0},
	} {
		if got := testutil.ToFloat64(c.vec.WithLabelValues(c.kind)); got != c.want {
			t.Errorf("%s: got %v, want %v", c.kind, got, c.want)
		}
	}
	// The children exist from the start: three kinds each, nothing else.
	if n := testutil.CollectAndCount(m.in, "palisade_stanzas_in_total"); n != 3 {
		t.Errorf("stanzas_in series: %d, want 3", n)
	}
}

func TestSessionsGauge(t *testing.T) {
	m := New(nil)
	a := m.SessionOpened("tls", "SCRAM-SHA-256")
	b := m.SessionOpened("tls", "SCRAM-SHA-256")
	c := m.SessionOpened("websocket", "X-MADE-UP")
	g := m.sessions.WithLabelValues("tls", "SCRAM-SHA-256")
	if got := testutil.ToFloat64(g); got != 2 {
		t.Fatalf("open tls sessions: %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.sessions.WithLabelValues("websocket", Other)); got != 1 {
		t.Fatalf("an unknown mechanism is counted as other: %v", got)
	}
	a.Close()
	c.Close()
	if got := testutil.ToFloat64(g); got != 1 {
		t.Fatalf("after one ended: %v, want 1", got)
	}
	b.Close()
	if got := testutil.ToFloat64(g); got != 0 {
		t.Fatalf("after both ended: %v, want 0", got)
	}
	m.SessionOpened("carrier-pigeon", "PLAIN").Close()
}

func TestLoginsAndDenials(t *testing.T) {
	m := New([]string{"access", "blocking"})
	m.Login(LoginSuccess, "PLAIN")
	m.Login(LoginFailure, "SCRAM-SHA-1")
	m.Login(LoginFailure, "alice@example.com") // a client may send anything
	m.Login(LoginLocked, "PLAIN")
	m.Login("bogus", "PLAIN") // not a result: not counted
	m.Denied("blocking", stanza.ServiceUnavailable)
	m.Denied("blocking", stanza.ServiceUnavailable)
	m.Denied("access", "")
	m.Denied("bob@example.com", "made up: bob@example.com")

	for _, c := range []struct {
		got  prometheus.Collector
		want float64
	}{
		{m.logins.WithLabelValues(LoginSuccess, "PLAIN"), 1},
		{m.logins.WithLabelValues(LoginFailure, "SCRAM-SHA-1"), 1},
		{m.logins.WithLabelValues(LoginFailure, Other), 1},
		{m.logins.WithLabelValues(LoginLocked, "PLAIN"), 1},
		{m.denials.WithLabelValues("blocking", "service-unavailable"), 2},
		{m.denials.WithLabelValues("access", Dropped), 1},
		{m.denials.WithLabelValues(Other, Other), 1},
	} {
		if v := testutil.ToFloat64(c.got); v != c.want {
			t.Errorf("%v: %v, want %v", c.got, v, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.denials); n != 3 {
		t.Errorf("denial series: %d, want 3", n)
	}
	noAt(t, m.Gatherer())
}

// TestNil: the layers count through a nil *Metrics in tests.
func TestNil(t *testing.T) {
	var m *Metrics
	m.StanzaIn(stanza.Message)
	m.StanzaOut(stanza.IQ)
	m.Login(LoginSuccess, "PLAIN")
	m.Denied("access", stanza.Forbidden)
	m.SessionOpened("tcp", "PLAIN").Close()
}

// TestExposition scrapes the handler, parses the text format and lints it:
// every family is ours (palisade_) or the Go runtime's and the process's,
// with HELP, and a module's collector on Registerer shows up too.
func TestExposition(t *testing.T) {
	m := New([]string{"blocking"})
	mod := prometheus.NewCounter(prometheus.CounterOpts{Name: "palisade_test_module_total", Help: "A module's counter."})
	if err := m.Registerer().Register(mod); err != nil {
		t.Fatal(err)
	}
	mod.Add(3)
	m.StanzaIn(stanza.Message)
	m.Denied("blocking", stanza.NotAcceptable)
	m.Login(LoginFailure, "PLAIN")

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, rec.Body.String())
	}
	for _, name := range []string{
		"palisade_sessions_open", "palisade_stanzas_in_total", "palisade_stanzas_out_total",
		"palisade_policy_denials_total", "palisade_logins_total", "palisade_test_module_total",
		"go_goroutines",
	} {
		if fams[name] == nil {
			t.Errorf("%s missing from the exposition", name)
		}
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "palisade_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("foreign family %s", name)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
	if v := value(fams["palisade_test_module_total"], nil); v != 3 {
		t.Errorf("module counter %v, want 3", v)
	}
	if v := value(fams["palisade_stanzas_in_total"], map[string]string{"kind": "message"}); v != 1 {
		t.Errorf("stanzas in %v, want 1", v)
	}
	if v := value(fams["palisade_policy_denials_total"], map[string]string{"policy": "blocking", "reason": "not-acceptable"}); v != 1 {
		t.Errorf("denials %v, want 1", v)
	}
	problems, err := testutil.GatherAndLint(m.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		if strings.HasPrefix(pr.Metric, "palisade_") {
			t.Errorf("lint: %s: %s", pr.Metric, pr.Text)
		}
	}
}

// value is the counter or gauge value of the series of f with labels
// (nil: the only one); -1 when there is none.
func value(f *dto.MetricFamily, labels map[string]string) float64 {
	if f == nil {
		return -1
	}
next:
	for _, mt := range f.GetMetric() {
		for _, lp := range mt.GetLabel() {
			if w, ok := labels[lp.GetName()]; ok && w != lp.GetValue() {
				continue next
			}
		}
		switch {
		case mt.Counter != nil:
			return mt.Counter.GetValue()
		case mt.Gauge != nil:
			return mt.Gauge.GetValue()
		}
	}
	return -1
}

// noAt fails when a label value looks like a JID.
func noAt(t *testing.T, g prometheus.Gatherer) {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if strings.Contains(lp.GetValue(), "@") {
					t.Errorf("%s{%s=%q}: a label holds an address", f.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}
