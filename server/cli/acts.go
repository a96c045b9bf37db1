package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/palisade-im/palisade/modules/archive"
	"github.com/palisade-im/palisade/server"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage/sqlite"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// recordAct journals an administrative act of the CLI (kind admin) when
// the archive is on. The CLI appends directly, whether a server runs or
// not, as it does for holds and exports: the journal takes several
// writers (storage/sqlite: each commit holds the record log's append lock
// and starts from the size on disk).
func recordAct(ctx context.Context, cfg *config.Config, act archive.AdminAct) error {
	if !cfg.Archive.Enabled {
		return nil
	}
	j, err := sqlite.OpenJournal(ctx, archive.Paths(cfg).Journal)
	if err != nil {
		return fmt.Errorf("journal the act: %w", err)
	}
	_, err = archive.RecordAdmin(ctx, j, act)
	if cerr := j.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("journal the act: %w", err)
	}
	return nil
}

// cliActor is who runs a CLI act: "cli:" and $USER.
func cliActor() string { return "cli:" + actorFrom("") }

// errNoServer tells that nothing listens on the admin address.
var errNoServer = errors.New("no server is running")

// adminReachable tells whether a server of cfg's data_dir listens on the
// admin address: errNoServer when the connection is refused, or when
// data_dir has no admin token (the server writes it when it starts its
// admin listener, so none of this data_dir ever listened).
func adminReachable(ctx context.Context, cfg *config.Config) error {
	if _, err := os.Stat(filepath.Join(cfg.Server.DataDir, server.AdminTokenFile)); errors.Is(err, fs.ErrNotExist) {
		return errNoServer
	}
	host, port, err := net.SplitHostPort(cfg.Listen.Admin)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("listen.admin: %w", err)}
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if errors.Is(err, syscall.ECONNREFUSED) {
		return errNoServer
	}
	if err != nil {
		return fmt.Errorf("admin listener %s: %w", cfg.Listen.Admin, err)
	}
	return c.Close()
}

// endAccountSessions tells a running server that an account's password
// changed or that it was deleted (change "passwd" or "del"): it ends the
// account's sessions, none resumable. It returns what to say about it
// (for the act's record). With no server running it says so in one line;
// with the admin listener off it warns that a running server was not
// told.
func (e *env) endAccountSessions(ctx context.Context, cfg *config.Config, j jid.JID, change string) (string, error) {
	if cfg.Listen.Admin == "" {
		fmt.Fprintf(e.stderr, "palisade: warning: listen.admin is off: a running server was not told, %s's live sessions go on until they end\n", j)
		return "admin listener off: a running server was not told", nil
	}
	switch err := adminReachable(ctx, cfg); {
	case errors.Is(err, errNoServer):
		fmt.Fprintf(e.stdout, "no server is running on %s: no session to end\n", cfg.Listen.Admin)
		return "no server running", nil
	case err != nil:
		return "", err
	}
	status, body, err := adminPost(ctx, cfg, "/admin/end-sessions?jid="+url.QueryEscape(j.String())+"&change="+change+"&by="+url.QueryEscape(cliActor()))
	if err != nil {
		return "", err
	}
	var res server.EndSessionsResult
	if status != http.StatusOK || json.Unmarshal(body, &res) != nil {
		return "", fmt.Errorf("admin listener %s: %d: %s", cfg.Listen.Admin, status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(e.stdout, "%s: %d session(s) ended on the running server\n", res.JID, res.Closed)
	return fmt.Sprintf("%d session(s) ended", res.Closed), nil
}

// journalSize is the size of the journal at path as it is on disk.
func journalSize(ctx context.Context, path string) (int64, error) {
	j, err := sqlite.OpenJournalReadOnly(ctx, path)
	if err != nil {
		return 0, err
	}
	defer j.Close()
	h, err := j.TreeHead(ctx)
	if err != nil {
		return 0, fmt.Errorf("journal %s: %w", path, err)
	}
	return h.Size, nil
}

// freshCheckpoint makes sure the journal's latest checkpoint covers
// everything journaled until now, before an export: a running server is
// asked over the admin listener (POST /archive/checkpoint); with none
// running the CLI issues the checkpoint itself with the journal's
// signing key and publishes it to the sinks, as the server would. It
// returns the checkpoint's size and who issued it.
func (e *env) freshCheckpoint(ctx context.Context, cfg *config.Config, files archive.Files) (int64, string, error) {
	if cfg.Listen.Admin != "" {
		switch err := adminReachable(ctx, cfg); {
		case err == nil:
			// What is on disk now, the server's own appends and this
			// process's alike, must be covered.
			size, err := journalSize(ctx, files.Journal)
			if err != nil {
				return 0, "", err
			}
			status, body, err := adminPost(ctx, cfg, "/archive/checkpoint?by="+url.QueryEscape(cliActor())+"&at_least="+strconv.FormatInt(size, 10))
			if err != nil {
				return 0, "", err
			}
			var res server.CheckpointResult
			if status != http.StatusOK || json.Unmarshal(body, &res) != nil {
				return 0, "", fmt.Errorf("a fresh checkpoint from the running server: admin listener %s: %d: %s", cfg.Listen.Admin, status, strings.TrimSpace(string(body)))
			}
			return res.Size, "the running server", nil
		case !errors.Is(err, errNoServer):
			return 0, "", err
		}
	}
	// No server answers (or listen.admin is off): sign what is on disk.
	audit, err := e.auditLogger(cfg)
	if err != nil {
		return 0, "", err
	}
	j, err := sqlite.OpenJournal(ctx, files.Journal)
	if err != nil {
		return 0, "", err
	}
	cp, err := archive.IssueCheckpoint(ctx, cfg, j, cliActor(), zap.NewNop(), audit.With(zap.String("actor", cliActor())))
	if cerr := j.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, "", err
	}
	return cp.Size, "this command (no server running)", nil
}
