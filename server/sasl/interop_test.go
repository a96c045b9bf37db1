package sasl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	msasl "mellium.im/sasl"

	"github.com/palisade-im/palisade/certs"
)

// tlsPair completes a TLS handshake over net.Pipe and returns the client's
// and server's connection states and the server's certificate.
func tlsPair(t *testing.T, maxVersion uint16) (client, server tls.ConnectionState, leaf *x509.Certificate) {
	t.Helper()
	kp, err := certs.LoadOrCreate(t.TempDir(), []string{"example.org"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(kp.Leaf())
	cc, sc := net.Pipe()
	t.Cleanup(func() { cc.Close(); sc.Close() })
	deadline := time.Now().Add(10 * time.Second)
	cc.SetDeadline(deadline)
	sc.SetDeadline(deadline)
	srv := tls.Server(sc, certs.ServerConfig(kp))
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	cli := tls.Client(cc, &tls.Config{RootCAs: pool, ServerName: "example.org", MaxVersion: maxVersion})
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return cli.ConnectionState(), srv.ConnectionState(), kp.Leaf()
}

// serverBinding computes the Binding a server would pass to Start.
func serverBinding(t *testing.T, cs tls.ConnectionState, leaf *x509.Certificate) Binding {
	t.Helper()
	exp, err := certs.TLSExporter(cs)
	if err != nil {
		t.Fatal(err)
	}
	return Binding{Exporter: exp, EndPoint: certs.TLSServerEndPoint(leaf)}
}

// TestSCRAMOverTLS runs the test client with channel-binding data computed
// from the client's side of a real TLS connection.
func TestSCRAMOverTLS(t *testing.T) {
	store := newTestStore(t, map[string]string{"alice": "secret"})
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		ccs, scs, leaf := tlsPair(t, version)
		b := serverBinding(t, scs, leaf)
		exp, err := certs.TLSExporter(ccs)
		if err != nil {
			t.Fatal(err)
		}
		ep := certs.TLSServerEndPoint(ccs.PeerCertificates[0])
		for _, hash := range []string{SHA1, SHA256} {
			m := SCRAM(hash, true, store.lookup)
			for cbType, data := range map[string][]byte{cbExporter: exp, cbEndPoint: ep} {
				c := &testClient{hash: hash, user: "alice", password: "secret", cbType: cbType, cbData: data}
				if _, err := runSCRAM(t, m, b, c); err != nil {
					t.Errorf("TLS %x %s %s: %v", version, hash, cbType, err)
				}
			}
		}
	}
}

// TestMelliumClientInterop authenticates mellium.im/sasl's client against
// this server over a real TLS 1.3 connection.
func TestMelliumClientInterop(t *testing.T) {
	store := newTestStore(t, map[string]string{"alice": "secret"})
	ccs, scs, leaf := tlsPair(t, tls.VersionTLS13)
	b := serverBinding(t, scs, leaf)
	offered := []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}
	for _, tc := range []struct {
		client msasl.Mechanism
		server Mechanism
		user   string
		pass   string
		ok     bool
	}{
		{msasl.ScramSha256Plus, SCRAM(SHA256, true, store.lookup), "alice", "secret", true},
		{msasl.ScramSha1Plus, SCRAM(SHA1, true, store.lookup), "Alice", "secret", true},
		{msasl.ScramSha256, SCRAM(SHA256, false, store.lookup), "alice", "secret", true},
		{msasl.ScramSha1, SCRAM(SHA1, false, store.lookup), "alice", "secret", true},
		{msasl.ScramSha256Plus, SCRAM(SHA256, true, store.lookup), "alice", "wrong", false},
	} {
		t.Run(tc.client.Name+"/"+tc.user+"/"+tc.pass, func(t *testing.T) {
			client := msasl.NewClient(tc.client,
				msasl.Credentials(func() ([]byte, []byte, []byte) { return []byte(tc.user), []byte(tc.pass), nil }),
				msasl.TLSState(ccs),
				msasl.RemoteMechanisms(offered...),
			)
			ctx := context.Background()
			ex := tc.server.Start(b)
			_, resp, err := client.Step(nil)
			if err != nil {
				t.Fatal(err)
			}
			if plus := strings.HasSuffix(tc.client.Name, "-PLUS"); plus != strings.HasPrefix(string(resp), "p=tls-exporter,") {
				t.Fatalf("client-first-message %q", resp)
			}
			for i := 0; ; i++ {
				if i > 3 {
					t.Fatal("too many steps")
				}
				out, done, err := ex.Step(ctx, resp)
				if err != nil {
					if tc.ok {
						t.Fatalf("server: %v", err)
					}
					if condition(err) != NotAuthorized {
						t.Fatalf("server: %v, want not-authorized", err)
					}
					return
				}
				if done {
					if !tc.ok {
						t.Fatal("wrong password accepted")
					}
					if _, _, err := client.Step(out); err != nil {
						t.Fatalf("client rejected server-final-message: %v", err)
					}
					if ex.Identity() != "alice" {
						t.Errorf("Identity %q", ex.Identity())
					}
					return
				}
				if _, resp, err = client.Step(out); err != nil {
					t.Fatalf("client: %v", err)
				}
			}
		})
	}
}
