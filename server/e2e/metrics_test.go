package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palisade-im/palisade/server"
	"github.com/palisade-im/palisade/server/config"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape is one parsed /metrics answer.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics GETs /metrics from the admin listener with the admin
// token and parses the text exposition.
func scrapeMetrics(t *testing.T, e *env, token string) scrape {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+e.cfg.Listen.Admin+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text exposition format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v\n%s", err, body)
	}
	// No label value names an account, a domain of a user or a resource.
	for name, f := range fams {
		if strings.HasPrefix(name, "palisade_") && f.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); strings.Contains(v, "@") || strings.Contains(v, domain) {
					t.Errorf("%s{%s=%q}: a label holds an address", name, l.GetName(), v)
				}
			}
		}
	}
	return fams
}

// value is the value of the series of family name whose labels include
// labels: a counter's or gauge's value, a histogram's sample count; 0 when
// the series is not there (yet).
func (s scrape) value(name string, labels ...string) float64 {
	f := s[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

// TestMetricsScrape: GET /metrics on the admin listener (admin token
// required) serves the Prometheus text format; after logins over the three
// transports, failed and locked-out logins, messages, a stanza the access rules deny and
// a MAM query, a second scrape shows the sessions, stanzas, logins,
// denial, journal and MAM counters moved, with no JID in any label; a
// closed session leaves the gauge.
func TestMetricsScrape(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Listen.Admin = freeAddr(t)
		c.Access.Rules = []config.Rule{{JID: "carol@localhost", Rights: config.Rights{Send: boolp(false)}}}
		c.Auth.LockoutThreshold = 2
		c.Auth.FailureDelay, c.Auth.MaxFailureDelay = config.Duration(time.Millisecond), config.Duration(5*time.Millisecond)
	})
	deadline := time.Now().Add(short)
	for {
		resp, err := http.Get("http://" + e.cfg.Listen.Admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin listener not up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	raw, err := os.ReadFile(filepath.Join(e.cfg.Server.DataDir, server.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(raw))

	// Like the other administrative requests: no token, no figures.
	for _, auth := range []string{"", "Bearer wrong"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.cfg.Listen.Admin+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "palisade_") {
			t.Errorf("GET /metrics with %q: %d %s", auth, resp.StatusCode, body)
		}
	}

	before := scrapeMetrics(t, e, token)
	for _, name := range []string{"palisade_stanzas_in_total", "palisade_stanzas_out_total", "palisade_sessions_open",
		"palisade_logins_total", "palisade_journal_appends_total", "palisade_journal_commit_seconds",
		"palisade_journal_commit_failures_total", "go_goroutines"} {
		if before[name] == nil {
			t.Errorf("%s missing from the first scrape", name)
		}
	}

	// A failed login (wrong password, PLAIN).
	bad := dial(t, e, modeStartTLS)
	bad.secure()
	if n := bad.authPlain("bob", "not-bobs-password"); !n.Is(nsSASL, "failure") {
		t.Fatalf("wrong password: %s", n)
	}
	bad.close()

	alice := login(t, e, modeStartTLS, "alice", "a")           // tcp
	bob := &pc{client: login(t, e, modeDirectTLS, "bob", "b")} // tls
	carol := login(t, e, modeWS, "carol", "c")                 // websocket
	for _, id := range []string{"m1", "m2", "m3"} {
		alice.send("<message to='bob@localhost/b' type='chat' id='%s'><body>metrics %s</body></message>", id, id)
		if m := bob.await("message "+id, func(n *Node) bool { return n.Is(nsClient, "message") && n.A("id") == id }); m == nil {
			t.Fatal(id)
		}
	}
	// carol may not send (access rule): one denial by policy "access".
	carol.send("<message to='alice@localhost/a' type='chat' id='no1'><body>denied</body></message>")
	wantRefused(t, carol.expect(nsClient, "message"), "no1", "cancel", "carol's message")
	// One MAM query.
	if fin := bob.mamQuery("", nil, "", false); fin.errCond != "" {
		t.Fatalf("mam query: %s", fin.errCond)
	}
	alice.sync()
	// Two wrong passwords for bob from 127.0.0.30 lock that address out
	// of his account: the right one is then refused as locked.
	for i := range 2 {
		wantFailure(t, authFrom(t, e, "127.0.0.30", "bob", fmt.Sprint("guess-", i)), "not-authorized", "a guess")
	}
	wantLockedOut(t, authFrom(t, e, "127.0.0.30", "bob", users["bob"]), "bob from the guessing address")

	after := scrapeMetrics(t, e, token)
	moved := func(what string, min float64, name string, labels ...string) {
		t.Helper()
		if d := after.value(name, labels...) - before.value(name, labels...); d < min {
			t.Errorf("%s: %s%v moved by %v, want at least %v", what, name, labels, d, min)
		}
	}
	exact := func(what string, want float64, name string, labels ...string) {
		t.Helper()
		if d := after.value(name, labels...) - before.value(name, labels...); d != want {
			t.Errorf("%s: %s%v moved by %v, want %v", what, name, labels, d, want)
		}
	}
	exact("logins", 3, "palisade_logins_total", "result", "success", "mechanism", "PLAIN")
	exact("failed logins", 3, "palisade_logins_total", "result", "failure", "mechanism", "PLAIN")
	exact("locked login", 1, "palisade_logins_total", "result", "locked", "mechanism", "PLAIN")
	exact("tcp session", 1, "palisade_sessions_open", "transport", "tcp", "mechanism", "PLAIN")
	exact("tls session", 1, "palisade_sessions_open", "transport", "tls", "mechanism", "PLAIN")
	exact("websocket session", 1, "palisade_sessions_open", "transport", "websocket", "mechanism", "PLAIN")
	moved("messages in", 4, "palisade_stanzas_in_total", "kind", "message")
	moved("messages out", 4, "palisade_stanzas_out_total", "kind", "message") // 3 to bob, carol's error
	moved("iqs in", 2, "palisade_stanzas_in_total", "kind", "iq")             // the query and the sync (bind is not a routed stanza)
	exact("denial", 1, "palisade_policy_denials_total", "policy", "access", "reason", "policy-violation")
	moved("journal appends", 3, "palisade_journal_appends_total")
	moved("journal commits", 3, "palisade_journal_commit_seconds")
	exact("journal failures", 0, "palisade_journal_commit_failures_total")
	exact("mam query", 1, "palisade_mam_queries_total", "result", "ok")

	// A session that ends leaves the gauge.
	carol.close()
	deadline = time.Now().Add(short)
	for {
		s := scrapeMetrics(t, e, token)
		if s.value("palisade_sessions_open", "transport", "websocket", "mechanism", "PLAIN") == before.value("palisade_sessions_open", "transport", "websocket", "mechanism", "PLAIN") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the closed websocket session is still counted as open")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
