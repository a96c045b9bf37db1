package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestContactsAndWebSocketURL(t *testing.T) {
	for _, tc := range []struct {
		body, want string
	}{
		{"[server.contacts]\nabuse = [\"mailto:abuse@example.org\", \"xmpp:abuse@example.org\"]\nsupport = [\"https://example.org/help\"]\n", ""},
		{"[server.contacts]\nabuse = [\"http://example.org/\"]\n", "server.contacts.abuse: \"http://example.org/\" must be a mailto:, xmpp: or https: URI"},
		{"[server.contacts]\nadmin = [\"mailto:nobody\"]\n", "server.contacts.admin"},
		{"[server.contacts]\nsales = [\"https:///x\"]\n", "has no host"},
		{"[server.contacts]\nboss = [\"mailto:a@b\"]\n", "boss"},
		{"[listen]\nwebsocket_url = \"wss://chat.example.org/xmpp-websocket\"\n", ""},
		{"[listen]\nwebsocket_url = \"https://chat.example.org/xmpp-websocket\"\n", "must be a ws:// or wss:// URL"},
		{"[listen]\nwebsocket = \"\"\nwebsocket_url = \"wss://chat.example.org/\"\n", "needs listen.websocket"},
	} {
		path := filepath.Join(t.TempDir(), "p.toml")
		if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path, fakeRegistry{})
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.body, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
}
