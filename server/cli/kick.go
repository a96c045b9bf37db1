package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/palisade-im/palisade/server"
	"github.com/palisade-im/palisade/server/config"
	"mellium.im/xmpp/jid"
)

// kick asks the running server, through its admin listener, to end the
// sessions of a JID (no resumption).
func (e *env) kick(ctx context.Context, cfg *config.Config, arg string) error {
	j, err := jid.Parse(arg)
	if err != nil || j.Localpart() == "" {
		return usageErr("%q is not a JID like alice@%s", arg, cfg.Server.Domains[0])
	}
	if !isServed(cfg, j.Domainpart()) {
		return usageErr("domain %q is not served (server.domains)", j.Domainpart())
	}
	addr := cfg.Listen.Admin
	if addr == "" {
		return &exitError{code: 2, err: fmt.Errorf("listen.admin is off: user kick needs the running server's admin listener")}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("listen.admin: %w", err)}
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every address: reach it on loopback
	}
	u := "http://" + net.JoinHostPort(host, port) + "/admin/kick?jid=" + url.QueryEscape(j.String())
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set(server.AdminHeader, "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("is the server running? admin listener %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var res server.KickResult
	switch {
	case resp.StatusCode == http.StatusOK && json.Unmarshal(body, &res) == nil:
		fmt.Fprintf(e.stdout, "%s: %d session(s) closed\n", res.JID, res.Closed)
		return nil
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s has no session", j)
	default:
		return fmt.Errorf("admin listener %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
	}
}
