package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-im/palisade/modules/pep"
	_ "github.com/palisade-im/palisade/modules/private" // XEP-0049, linked into every e2e server
	"github.com/palisade-im/palisade/server/config"
)

// brief is n serialized, cut to a length a test log can hold.
func brief(n *Node) string {
	s := n.String()
	if len(s) > 400 {
		s = s[:400] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}

// qc is a raw client read synchronously, so that the size of each element
// as the server sent it can be measured.
type qc struct{ *client }

func quotaLogin(t *testing.T, e *env, user, res string) *qc {
	t.Helper()
	c := dial(t, e, modeStartTLS)
	c.authed(user)
	c.bind(res)
	return &qc{c}
}

var quotaSeq atomic.Int64

// iq sends an iq and returns its answer and the answer's size in bytes
// as read from the stream.
func (c *qc) iq(typ, payload string) (*Node, int64) {
	c.t.Helper()
	id := "q" + strconv.FormatInt(quotaSeq.Add(1), 10)
	c.send("<iq type='%s' id='%s'>%s</iq>", typ, id, payload)
	for {
		off := c.dec.InputOffset()
		n, err := c.tryNext(short)
		if err != nil {
			c.t.Fatalf("%s: waiting for iq %s: %v", c.name(), id, err)
		}
		if n.Is(nsClient, "iq") && n.A("id") == id {
			return n, c.dec.InputOffset() - off
		}
	}
}

// errorText returns the <text/> of a stanza error.
func errorText(n *Node) string {
	if e := n.Child(nsClient, "error"); e != nil {
		if t := e.Child(nsStanzas, "text"); t != nil {
			return t.Text
		}
	}
	return ""
}

// The probe's attack on private storage: 400 namespaces of 60 KB. Past
// limits.max_private_bytes (1 MiB by default) each is refused with
// not-acceptable naming the quota, and no more than the quota is stored;
// past limits.max_private_items small namespaces are refused the same way.
func TestQuotaPrivateFlood(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) { c.Limits.MaxStanzaBytes = 70000 })
	c := quotaLogin(t, e, "alice", "flood")
	blob := strings.Repeat("z", 60000)
	accepted, refused := 0, 0
	for i := range 400 {
		r, _ := c.iq("set", fmt.Sprintf("<query xmlns='jabber:iq:private'><x xmlns='urn:flood:%d'>%s</x></query>", i, blob))
		switch {
		case r.A("type") == "result":
			if refused > 0 {
				t.Fatalf("namespace %d accepted after a refusal", i)
			}
			accepted++
		case r.stanzaError() == "not-acceptable" && strings.Contains(errorText(r), "limits.max_private_bytes"):
			refused++
		default:
			t.Fatalf("namespace %d: %s", i, brief(r))
		}
	}
	limit := e.cfg.Limits.MaxPrivateBytes
	// Each fragment is stored serialized: 60,000 bytes of text and its tags.
	if accepted < 1 || accepted*60000 > limit || (accepted+1)*60100 <= limit {
		t.Errorf("%d of 60 KB accepted under a %d-byte quota", accepted, limit)
	}
	if refused != 400-accepted {
		t.Errorf("%d refused, want %d", refused, 400-accepted)
	}
	ctx := context.Background()
	stored := 0
	for i := range 400 {
		if d, err := e.store.GetPrivate(ctx, "alice@"+domain, fmt.Sprintf("urn:flood:%d x", i)); err == nil {
			stored += len(d)
		}
	}
	if stored > limit || stored == 0 {
		t.Errorf("%d bytes stored, quota %d", stored, limit)
	}
	// The count quota: small namespaces for another account.
	b := quotaLogin(t, e, "bob", "flood")
	max := e.cfg.Limits.MaxPrivateItems
	for i := range max + 5 {
		r, _ := b.iq("set", fmt.Sprintf("<query xmlns='jabber:iq:private'><x xmlns='urn:small:%d'>v</x></query>", i))
		ok := r.A("type") == "result"
		if want := i < max; ok != want {
			t.Fatalf("small namespace %d of a %d quota: %s", i, max, brief(r))
		}
		if !ok && (r.stanzaError() != "not-acceptable" || !strings.Contains(errorText(r), "limits.max_private_items")) {
			t.Fatalf("small namespace %d: %s", i, brief(r))
		}
	}
}

// pubsubItems is an items request for node with an optional RSM query.
func pubsubItems(node, set string) string {
	if set != "" {
		set = "<set xmlns='" + nsRSM + "'>" + set + "</set>"
	}
	return "<pubsub xmlns='" + nsPubSub + "'><items node='" + node + "'/>" + set + "</pubsub>"
}

// quotaPEPEnv allows 64 KB stanzas and 16 KB PEP payloads in nodes of up
// to 100 items; mod may change more.
func quotaPEPEnv(t *testing.T, mod func(*config.Config)) *env {
	return newEnv(t, func(c *config.Config) {
		c.Limits.MaxStanzaBytes = 65536
		c.Modules["pep"] = config.Section{Name: "pep", Value: &pep.Config{MaxItems: 100, MaxNodes: 10, MaxPayloadBytes: 16000}}
		if mod != nil {
			mod(c)
		}
	})
}

func publishOpts(maxItems int) string {
	return "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>" +
		nsPubSub + "#publish-options</value></field><field var='pubsub#max_items'><value>" + strconv.Itoa(maxItems) +
		"</value></field></x></publish-options>"
}

func (c *qc) publish(node, id string, size int) *Node {
	c.t.Helper()
	r, _ := c.iq("set", "<pubsub xmlns='"+nsPubSub+"'><publish node='"+node+"'><item id='"+id+"'><x xmlns='urn:big'>"+
		strings.Repeat("p", size)+"</x></item></publish>"+publishOpts(100)+"</pubsub>")
	return r
}

// The probe's attack on PEP: an <items/> request for a node whose items
// together are many times the stanza limit. Every answer stays within the
// limit, carries an RSM <set/> with the count, and paging with <after/>
// (and <before/> from the unpaged answer) returns every item once.
func TestQuotaPEPItemsPaged(t *testing.T) {
	t.Parallel()
	e := quotaPEPEnv(t, nil)
	c := quotaLogin(t, e, "alice", "pep")
	limit := int64(e.cfg.Limits.MaxStanzaBytes)
	const n = 40 // 40 x 15 KB: 600 KB, 9x the stanza limit
	for i := range n {
		if r := c.publish("urn:big", fmt.Sprintf("i%02d", i), 15000); r.A("type") != "result" {
			t.Fatalf("publish %d: %s", i, brief(r))
		}
	}
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("i%02d", i))
	}
	page := func(set string) ([]string, *Node) {
		t.Helper()
		r, size := c.iq("get", pubsubItems("urn:big", set))
		if r.A("type") != "result" {
			t.Fatalf("items %s: %s", set, brief(r))
		}
		if size > limit+pep.WrapperAllowance {
			t.Fatalf("items %s: one answer of %d bytes, over the %d-byte stanza limit and its wrapper allowance", set, size, limit)
		}
		ps := r.Child(nsPubSub, "pubsub")
		var ids []string
		for _, it := range ps.Child(nsPubSub, "items").Nodes {
			ids = append(ids, it.A("id"))
		}
		return ids, ps.Child(nsRSM, "set")
	}
	// No RSM asked: the newest items that fit, and a set to page back.
	ids, set := page("")
	if set == nil || strings.TrimSpace(set.Child(nsRSM, "count").Text) != strconv.Itoa(n) || len(ids) == 0 || ids[len(ids)-1] != want[n-1] {
		t.Fatalf("unpaged answer: %v, set %s", ids, set)
	}
	got := ids
	for before := set.Child(nsRSM, "first").Text; before != want[0]; {
		ids, set := page("<before>" + before + "</before>")
		if len(ids) == 0 {
			t.Fatalf("empty page before %s", before)
		}
		got = append(append([]string(nil), ids...), got...)
		before = set.Child(nsRSM, "first").Text
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("paged back through %v", got)
	}
	// Forward with after, asking for more than fits.
	got = nil
	after := ""
	for range n {
		q := "<max>1000</max>"
		if after != "" {
			q += "<after>" + after + "</after>"
		}
		ids, set := page(q)
		if len(ids) == 0 {
			break
		}
		got = append(got, ids...)
		after = set.Child(nsRSM, "last").Text
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("paged forward through %v", got)
	}
	// A contact's last-item fetch (max_items=1) is unchanged.
	if ids, _ := page(""); len(ids) == 0 {
		t.Error("no items")
	}
}

// limits.max_pep_node_bytes caps a node: publishes past it are refused with
// not-acceptable and <payload-too-big/> naming the quota; a retraction
// frees room.
func TestQuotaPEPNodeBytes(t *testing.T) {
	t.Parallel()
	e := quotaPEPEnv(t, func(c *config.Config) { c.Limits.MaxPEPNodeBytes = 200000 })
	c := quotaLogin(t, e, "alice", "pep")
	accepted := 0
	var refusal *Node
	for i := range 40 {
		r := c.publish("urn:big", fmt.Sprintf("i%02d", i), 15000)
		if r.A("type") == "result" {
			if refusal != nil {
				t.Fatalf("item %d accepted after a refusal", i)
			}
			accepted++
			continue
		}
		refusal = r
	}
	if refusal == nil || accepted != 13 {
		t.Fatalf("%d of 40 items of 15 KB accepted under a 200 KB node quota, want 13", accepted)
	}
	er := refusal.Child(nsClient, "error")
	if refusal.stanzaError() != "not-acceptable" || er.Child(nsPSErr, "payload-too-big") == nil ||
		!strings.Contains(errorText(refusal), "limits.max_pep_node_bytes") {
		t.Errorf("refusal: %s", brief(refusal))
	}
	stored := 0
	for _, r := range []string{"", "<max>5</max><after>i04</after>", "<max>5</max><after>i09</after>"} {
		ans, _ := c.iq("get", pubsubItems("urn:big", r))
		if set := ans.Child(nsPubSub, "pubsub").Child(nsRSM, "set"); set != nil {
			stored, _ = strconv.Atoi(strings.TrimSpace(set.Child(nsRSM, "count").Text))
		}
	}
	if stored != accepted {
		t.Errorf("the node holds %d items, want the %d accepted", stored, accepted)
	}
	if r, _ := c.iq("set", "<pubsub xmlns='"+nsPubSub+"'><retract node='urn:big'><item id='i00'/></retract></pubsub>"); r.A("type") != "result" {
		t.Fatalf("retract: %s", brief(r))
	}
	if r := c.publish("urn:big", "again", 15000); r.A("type") != "result" {
		t.Errorf("publish after a retraction: %s", brief(r))
	}
}

// binaryServer is the palisade binary built from this tree running as
// deployed, every module linked (the in-process e2e servers have no
// offline storage, which other e2e tests rely on).
type binaryServer struct {
	e   *env
	cmd *exec.Cmd
	out *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startBinary builds palisade, creates alice and carol through its CLI
// and serves with limits (TOML lines) in [limits], logging at info level.
func startBinary(t *testing.T, limits string) *binaryServer {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "palisade")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := config.Default()
	cfg.Server.DataDir = filepath.Join(dir, "data")
	cfg.Listen.C2S, cfg.Listen.C2SDirectTLS, cfg.Listen.WebSocket = freeAddr(t), freeAddr(t), freeAddr(t)
	conf := filepath.Join(dir, "palisade.toml")
	toml := fmt.Sprintf("[server]\ndomains = [%q]\ndata_dir = %q\n\n[listen]\nc2s = %q\nc2s_direct_tls = %q\nwebsocket = %q\nadmin = %q\n\n"+
		"[auth]\npassword_min_length = 8 # the e2e accounts' passwords\n\n[limits]\nmax_stanza_bytes = 10000\n%s\n\n[log]\nformat = \"json\"\nlevel = \"info\"\n",
		domain, cfg.Server.DataDir, cfg.Listen.C2S, cfg.Listen.C2SDirectTLS, cfg.Listen.WebSocket, freeAddr(t), limits)
	if err := os.WriteFile(conf, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "carol"} { // passwords of 8 characters, the shortest policy allowed
		pw := users[name]
		add := exec.CommandContext(ctx, bin, "--config", conf, "user", "add", name+"@"+domain)
		add.Stdin = strings.NewReader(pw + "\n")
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("user add %s: %v\n%s", name, err, out)
		}
	}
	s := &binaryServer{out: &syncBuffer{}}
	s.cmd = exec.Command(bin, "--config", conf, "serve")
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("palisade (pid %d) did not stop within 15 s of SIGTERM", s.cmd.Process.Pid)
			_ = s.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("palisade log:\n%s", s.out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", cfg.Listen.C2S, time.Second)
		if err == nil {
			_ = c.Close()
			break
		}
		select {
		case <-done:
			t.Fatalf("palisade exited: %s", s.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("palisade not listening after 30 s: %s", s.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pem, err := os.ReadFile(filepath.Join(cfg.Server.DataDir, "certs", "server.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in server.pem")
	}
	s.e = &env{t: t, cfg: cfg, pool: pool}
	return s
}

// The probe's offline flood: messages to an offline account stop at
// limits.max_offline_bytes, each further one bounced to its sender with
// service-unavailable naming the quota; nothing partial is stored, and the
// server logs the refusals once, not once per message.
func TestQuotaOfflineFlood(t *testing.T) {
	t.Parallel()
	const quota = 100000
	srv := startBinary(t, "max_offline_bytes = "+strconv.Itoa(quota))
	b := login(t, srv.e, modeStartTLS, "carol", "flood")
	const n = 60
	body := strings.Repeat("m", 8000)
	for i := range n {
		b.send("<message to='alice@%s' type='chat' id='f%d'><body>%s</body></message>", domain, i, body)
	}
	// The session handles its stanzas in order: the bounces come before
	// the answer to an iq sent after the flood.
	b.send("<iq type='get' id='end' to='%s'><query xmlns='%s'/></iq>", domain, nsDiscoI)
	bounced := 0
	for {
		r := b.next()
		if r.Is(nsClient, "iq") && r.A("id") == "end" {
			break
		}
		if !r.Is(nsClient, "message") || r.A("type") != "error" {
			continue
		}
		if r.stanzaError() != "service-unavailable" || !strings.Contains(errorText(r), "limits.max_offline_bytes") {
			t.Fatalf("bounce: %s", brief(r))
		}
		bounced++
	}
	// Alice comes online and gets what was stored, whole.
	a := login(t, srv.e, modeStartTLS, "alice", "home")
	a.available(0)
	stored := 0
	a.send("<iq type='get' id='end' to='%s'><query xmlns='%s'/></iq>", domain, nsDiscoI)
	for {
		r := a.next()
		if r.Is(nsClient, "iq") && r.A("id") == "end" {
			break
		}
		if r.Is(nsClient, "message") {
			if got := r.Child(nsClient, "body"); got == nil || got.Text != body {
				t.Errorf("a stored message is not whole: %s", brief(r))
			}
			stored++
		}
	}
	if bounced == 0 || stored == 0 || stored*8000 > quota || stored+bounced != n {
		t.Errorf("%d stored, %d bounced of %d messages of 8 KB under a %d-byte quota", stored, bounced, n, quota)
	}
	if got := strings.Count(srv.out.String(), `"msg":"offline storage full"`); got != 1 {
		t.Errorf("%d \"offline storage full\" lines for %d refusals, want 1", got, bounced)
	}
}
