package server

import (
	"encoding/json"
	"encoding/xml"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// XEP-0156 connection discovery: the WebSocket listener serves
// /.well-known/host-meta (XRD, RFC 6415) and /.well-known/host-meta.json
// (JRD) with a link to its RFC 7395 endpoint, readable by web clients of
// any origin (CORS).
const (
	relWebSocket = "urn:xmpp:alt-connections:websocket"
	nsXRD        = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
)

// hostMeta serves both host-meta documents.
func (s *Server) hostMeta(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Accept")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	href := s.webSocketURL(r)
	var body []byte
	if strings.HasSuffix(r.URL.Path, ".json") {
		type link struct {
			Rel  string `json:"rel"`
			Href string `json:"href"`
		}
		body, _ = json.Marshal(struct {
			Links []link `json:"links"`
		}{[]link{{relWebSocket, href}}})
		h.Set("Content-Type", "application/json")
	} else {
		var b strings.Builder
		b.WriteString(xml.Header)
		b.WriteString("<XRD xmlns='" + nsXRD + "'>\n  <Link rel='" + relWebSocket + "' href='")
		_ = xml.EscapeText(&b, []byte(href))
		b.WriteString("'/>\n</XRD>\n")
		body = []byte(b.String())
		h.Set("Content-Type", "application/xrd+xml; charset=utf-8")
	}
	h.Set("Cache-Control", "max-age=3600")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// webSocketURL is listen.websocket_url, or else the listener's URL for
// the domain the client asked (the request's host when it is served here,
// else the first served domain) on the port the request came in on.
func (s *Server) webSocketURL(r *http.Request) string {
	if u := s.cfg.Listen.WebSocketURL; u != "" {
		return u
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if !s.domains[host] && len(s.cfg.Server.Domains) > 0 {
		host = s.cfg.Server.Domains[0]
	}
	_, port, _ := net.SplitHostPort(s.cfg.Listen.WebSocket)
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, p, err := net.SplitHostPort(a.String()); err == nil {
			port = p
		}
	}
	scheme := "wss"
	if s.cfg.Listen.WebSocketPlain {
		scheme = "ws"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port), Path: "/xmpp-websocket"}
	return u.String()
}
