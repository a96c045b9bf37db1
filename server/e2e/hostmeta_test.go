package e2e

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/server/config"
)

const relWS = "urn:xmpp:alt-connections:websocket"

// getHostMeta fetches path from the WebSocket listener over its real TLS,
// asking for the served domain.
func getHostMeta(t *testing.T, e *env, method, path string) (*http.Response, []byte) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: e.tlsConfig(), DialContext: func(ctx2 context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx2, network, e.cfg.Listen.WebSocket)
	}}
	defer tr.CloseIdleConnections()
	_, port, _ := net.SplitHostPort(e.cfg.Listen.WebSocket)
	req, err := http.NewRequest(method, "https://"+domain+":"+port+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", "https://webclient.example")
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

func checkHostMeta(t *testing.T, e *env, wantHref string) {
	t.Helper()
	res, body := getHostMeta(t, e, "GET", "/.well-known/host-meta")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/xrd+xml") ||
		res.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("host-meta: %d %v %s", res.StatusCode, res.Header, body)
	}
	var xrd struct {
		XMLName xml.Name `xml:"http://docs.oasis-open.org/ns/xri/xrd-1.0 XRD"`
		Links   []struct {
			Rel  string `xml:"rel,attr"`
			Href string `xml:"href,attr"`
		} `xml:"http://docs.oasis-open.org/ns/xri/xrd-1.0 Link"`
	}
	if err := xml.Unmarshal(body, &xrd); err != nil {
		t.Fatalf("host-meta: %v: %s", err, body)
	}
	if len(xrd.Links) != 1 || xrd.Links[0].Rel != relWS || xrd.Links[0].Href != wantHref {
		t.Errorf("host-meta links: %+v, want %s", xrd.Links, wantHref)
	}

	res, body = getHostMeta(t, e, "GET", "/.well-known/host-meta.json")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" ||
		res.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("host-meta.json: %d %v %s", res.StatusCode, res.Header, body)
	}
	var jrd struct {
		Links []struct{ Rel, Href string } `json:"links"`
	}
	if err := json.Unmarshal(body, &jrd); err != nil {
		t.Fatalf("host-meta.json: %v: %s", err, body)
	}
	if len(jrd.Links) != 1 || jrd.Links[0].Rel != relWS || jrd.Links[0].Href != wantHref {
		t.Errorf("host-meta.json links: %+v, want %s", jrd.Links, wantHref)
	}
}

func TestHostMetaDerived(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, port, _ := net.SplitHostPort(e.cfg.Listen.WebSocket)
	checkHostMeta(t, e, "wss://localhost:"+port+"/xmpp-websocket")

	// A CORS preflight is answered; other methods are refused.
	res, _ := getHostMeta(t, e, "OPTIONS", "/.well-known/host-meta.json")
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("preflight: %d %v", res.StatusCode, res.Header)
	}
	if res, _ := getHostMeta(t, e, "POST", "/.well-known/host-meta"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", res.StatusCode)
	}
}

func TestHostMetaConfiguredURL(t *testing.T) {
	t.Parallel()
	const u = "wss://chat.example.org/xmpp-websocket"
	e := newEnv(t, func(c *config.Config) { c.Listen.WebSocketURL = u })
	checkHostMeta(t, e, u)
}
