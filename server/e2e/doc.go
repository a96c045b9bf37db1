// Package e2e holds end-to-end protocol tests of the Palisade core: a real
// server (SQLite store, self-signed certificate, TLS, TCP and WebSocket
// listeners on loopback) driven by a small raw XMPP client.
package e2e
