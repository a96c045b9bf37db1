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
// sessions of a JID (no resumption). The server journals the act (kind
// admin) under the CLI's actor, as it does unlocks: only it can do them.
func (e *env) kick(ctx context.Context, cfg *config.Config, arg string) error {
	j, err := jid.Parse(arg)
	if err != nil || j.Localpart() == "" {
		return usageErr("%q is not a JID like alice@%s", arg, cfg.Server.Domains[0])
	}
	if !isServed(cfg, j.Domainpart()) {
		return usageErr("domain %q is not served (server.domains)", j.Domainpart())
	}
	status, body, err := adminPost(ctx, cfg, "/admin/kick?jid="+url.QueryEscape(j.String())+"&by="+url.QueryEscape(cliActor()))
	if err != nil {
		return err
	}
	var res server.KickResult
	switch {
	case status == http.StatusOK && json.Unmarshal(body, &res) == nil:
		fmt.Fprintf(e.stdout, "%s: %d session(s) closed\n", res.JID, res.Closed)
		return nil
	case status == http.StatusNotFound:
		return fmt.Errorf("%s has no session", j)
	default:
		return fmt.Errorf("admin listener %s: %d: %s", cfg.Listen.Admin, status, strings.TrimSpace(string(body)))
	}
}

// unlock asks the running server to clear an account's lockout.
func (e *env) unlock(ctx context.Context, cfg *config.Config, arg string) error {
	j, err := jid.Parse(arg)
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
		return usageErr("%q is not a bare JID like alice@%s", arg, cfg.Server.Domains[0])
	}
	if !isServed(cfg, j.Domainpart()) {
		return usageErr("domain %q is not served (server.domains)", j.Domainpart())
	}
	status, body, err := adminPost(ctx, cfg, "/admin/unlock?jid="+url.QueryEscape(j.String())+"&by="+url.QueryEscape(cliActor()))
	if err != nil {
		return err
	}
	var res server.UnlockResult
	if status != http.StatusOK || json.Unmarshal(body, &res) != nil {
		return fmt.Errorf("admin listener %s: %d: %s", cfg.Listen.Admin, status, strings.TrimSpace(string(body)))
	}
	if res.Unlocked {
		fmt.Fprintf(e.stdout, "%s: unlocked (failed logins cleared)\n", res.JID)
	} else {
		fmt.Fprintf(e.stdout, "%s: had no failed logins\n", res.JID)
	}
	return nil
}

// adminPost sends an administrative POST to the running server's admin
// listener ([listen] admin), with the admin token the server keeps in
// data_dir (only its user can read it), and returns the status and body.
func adminPost(ctx context.Context, cfg *config.Config, path string) (int, []byte, error) {
	return adminRequest(ctx, cfg, http.MethodPost, path)
}

// adminRequest is adminPost with another method (GET for reads).
func adminRequest(ctx context.Context, cfg *config.Config, method, path string) (int, []byte, error) {
	addr := cfg.Listen.Admin
	if addr == "" {
		return 0, nil, &exitError{code: 2, err: fmt.Errorf("listen.admin is off: this command needs the running server's admin listener")}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, nil, &exitError{code: 2, err: fmt.Errorf("listen.admin: %w", err)}
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every address: reach it on loopback
	}
	token, err := server.ReadAdminToken(cfg.Server.DataDir)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+net.JoinHostPort(host, port)+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("is the server running? admin listener %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, body, nil
}
