package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/palisade-im/palisade/modules/groups" // internal group memberships, linked into every e2e server
	"github.com/palisade-im/palisade/server/cli"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
	"mellium.im/xmpp/jid"
)

// hosts keeps the module.Host each e2e server gave its modules, by its
// configuration, so that a test can call what modules can (Router.Groups).
var hosts sync.Map // *config.Config -> *module.Host

func init() {
	module.Register(module.Info{Name: "e2e_host_probe", New: func(h *module.Host, _ any) (any, error) {
		hosts.Store(h.Config, h)
		return struct{}{}, nil
	}})
}

// groupCLI runs `palisade user group ARGS` in-process with a config file
// for the running server's data_dir, as an administrator would while it
// runs, and fails the test unless it succeeds.
func groupCLI(t *testing.T, e *env, args ...string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "palisade.toml")
	doc := "[server]\ndomains = [\"" + domain + "\"]\ndata_dir = \"" + e.cfg.Server.DataDir + "\"\n" +
		"[listen]\nc2s = \"\"\nc2s_direct_tls = \"\"\nwebsocket = \"\"\nadmin = \"\"\n[groups]\nops = \"\"\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := cli.Main(append([]string{"--config", path, "user", "group"}, args...), strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("palisade user group %v: exit %d: %s", args, code, errOut.String())
	}
}

// waitRule waits until the account's access rule is want (-1: default).
func waitRule(t *testing.T, e *env, bare string, want int) {
	t.Helper()
	j := jid.MustParse(bare)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, rule := e.srv.Rights(j); rule == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's access rule did not become %d", bare, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAccessInternalGroups: an [[access.rule]] for a group of internal
// accounts ([groups] ops = ""), with memberships changed by the CLI while
// the server runs: the next login follows, a live session the rules no
// longer admit is closed with not-authorized, and taking the account out
// of the group lets it back in, all without a restart.
func TestAccessInternalGroups(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.Groups = map[string]string{"ops": ""}
		c.Access.Default = config.Rights{Login: boolp(true)}
		c.Access.Rules = []config.Rule{{Group: "ops", Rights: config.Rights{Login: boolp(false)}}}
	})
	desk := login(t, e, modeStartTLS, "alice", "desk")

	// bob, without a session, is put in ops: his next login is refused.
	groupCLI(t, e, "add", "bob@"+domain, "ops")
	waitRule(t, e, "bob@"+domain, 0)
	h, _ := hosts.Load(e.cfg)
	if g := h.(*module.Host).Router.Groups(jid.MustParse("bob@" + domain)); !slices.Equal(g, []string{"ops"}) {
		t.Errorf("Router.Groups(bob) = %v, want [ops]: modules do not see internal members", g)
	}
	wantFailure(t, authFrom(t, e, "127.0.0.1", "bob", users["bob"]), "not-authorized", "bob in ops")

	// alice, with a session, is put in ops: the session is closed.
	groupCLI(t, e, "add", "alice@"+domain, "ops")
	desk.expectStreamError("not-authorized")
	wantFailure(t, authFrom(t, e, "127.0.0.1", "alice", users["alice"]), "not-authorized", "alice in ops")
	// carol, in no group, is untouched.
	login(t, e, modeStartTLS, "carol", "c")

	// Out of ops again: the default applies.
	groupCLI(t, e, "remove", "alice@"+domain, "ops")
	waitRule(t, e, "alice@"+domain, -1)
	login(t, e, modeStartTLS, "alice", "back")
}
