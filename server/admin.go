package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/palisade-im/palisade/server/module"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// AdminTokenFile is the file in data_dir holding the admin listener's
// token. The server creates it with mode 0600 on first start; the CLI
// (`palisade user kick`, `user unlock`) reads it and sends it as
// "Authorization: Bearer TOKEN". Only whoever can read data_dir's files
// (the server's user, root) can administer the running server.
const AdminTokenFile = "admin.token"

// adminTokenBytes is the token's entropy (hex-encoded in the file).
const adminTokenBytes = 32

// LoadOrCreateAdminToken returns the admin token of dataDir, creating
// AdminTokenFile (mode 0600) when there is none. A token file that others
// could read (group or world permissions) is replaced by a new one, since
// the old token may have leaked; replaced reports it.
func LoadOrCreateAdminToken(dataDir string) (token string, replaced bool, err error) {
	path := filepath.Join(dataDir, AdminTokenFile)
	fi, err := os.Lstat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return "", false, fmt.Errorf("admin token %s: not a regular file", path)
	case err == nil && fi.Mode().Perm()&0o077 == 0:
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			return "", false, fmt.Errorf("admin token: %w", rerr)
		}
		if tok := strings.TrimSpace(string(b)); len(tok) >= 2*adminTokenBytes {
			return tok, false, nil
		}
		replaced = true // empty or truncated: write a new one
	case err == nil:
		replaced = true
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	raw := make([]byte, adminTokenBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	// Written to a private temporary file, then renamed over the old one,
	// so the token is never in a file with wider permissions.
	f, err := os.CreateTemp(dataDir, ".admin.token-*")
	if err != nil {
		return "", false, fmt.Errorf("admin token: %w", err)
	}
	_, werr := f.WriteString(tok + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr, os.Chmod(f.Name(), 0o600), os.Rename(f.Name(), path)); err != nil {
		_ = os.Remove(f.Name())
		return "", false, fmt.Errorf("admin token %s: %w", path, err)
	}
	return tok, replaced, nil
}

// ReadAdminToken reads the admin token of dataDir, for the CLI.
func ReadAdminToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, AdminTokenFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w (run this command as the server's user; the server creates the file on start)", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("admin token %s is empty", path)
	}
	return tok, nil
}

// KickResult is the JSON answer of POST /admin/kick.
type KickResult struct {
	JID    string `json:"jid"`
	Closed int    `json:"closed"`
}

// adminKick serves POST /admin/kick?jid=JID: it closes every session of a
// bare JID (or the one of a full JID) with a policy-violation stream error;
// resumption is refused. Only loopback clients with the admin token may.
func (s *Server) adminKick(w http.ResponseWriter, r *http.Request) {
	if !s.adminAllowed(w, r) {
		return
	}
	j, err := jid.Parse(r.URL.Query().Get("jid"))
	if err != nil || j.Localpart() == "" || !s.IsLocal(j.Domainpart()) {
		http.Error(w, "jid: a local account JID is required", http.StatusBadRequest)
		return
	}
	closed := s.Kick(j, "admin-http", "admin listener /admin/kick", zap.String("remote", r.RemoteAddr))
	w.Header().Set("Content-Type", "application/json")
	if closed == 0 {
		w.WriteHeader(http.StatusNotFound)
	}
	_ = json.NewEncoder(w).Encode(KickResult{JID: j.String(), Closed: closed})
}

// Kick ends every session of a local bare JID, or the one session of a
// full JID, with a policy-violation stream error; resumption is refused.
// It writes one session_kicked audit event naming the actor (who asked)
// and the reason (how), with extra fields, and returns how many sessions
// it closed. `palisade user kick` (through /admin/kick) and the ad-hoc
// command "End User Session" both come here.
func (s *Server) Kick(j jid.JID, actor, reason string, extra ...zap.Field) int {
	var sessions []module.Session
	if j.Resourcepart() != "" {
		if sess := s.Session(j); sess != nil {
			sessions = append(sessions, sess)
		}
	} else {
		sessions = s.Sessions(j)
	}
	for _, sess := range sessions {
		sess.Close("policy-violation", "session ended by an administrator")
	}
	fields := append([]zap.Field{zap.String("jid", j.String()), zap.Int("sessions", len(sessions)),
		zap.String("actor", actor), zap.String("reason", reason)}, extra...)
	s.audit.Info("session_kicked", fields...)
	return len(sessions)
}

// UnlockResult is the JSON answer of POST /admin/unlock.
type UnlockResult struct {
	JID      string `json:"jid"`
	Unlocked bool   `json:"unlocked"`
}

// adminUnlock serves POST /admin/unlock?jid=BARE: it clears the account's
// failed logins and lockout.
func (s *Server) adminUnlock(w http.ResponseWriter, r *http.Request) {
	if !s.adminAllowed(w, r) {
		return
	}
	j, err := jid.Parse(r.URL.Query().Get("jid"))
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" || !s.IsLocal(j.Domainpart()) {
		http.Error(w, "jid: a local bare JID is required", http.StatusBadRequest)
		return
	}
	had := s.lockout.unlock(j.String())
	s.audit.Info("user_unlock", zap.String("jid", j.String()), zap.Bool("had_failures", had),
		zap.String("actor", "admin-http"), zap.String("remote", r.RemoteAddr))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(UnlockResult{JID: j.String(), Unlocked: had})
}

// adminAllowed admits POST requests from loopback addresses that carry
// the admin token ("Authorization: Bearer TOKEN"), and answers the
// others; a refused token is audited.
func (s *Server) adminAllowed(w http.ResponseWriter, r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	ip := net.ParseIP(host)
	if err != nil || ip == nil || !ip.IsLoopback() {
		http.Error(w, "administrative requests are only accepted from loopback", http.StatusForbidden)
		return false
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !s.adminTokenOK(tok) {
		reason := "no token"
		if ok {
			reason = "wrong token"
		}
		s.audit.Warn("admin_refused", zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr),
			zap.String("ip", host), zap.String("reason", reason))
		w.Header().Set("WWW-Authenticate", `Bearer realm="palisade admin"`)
		http.Error(w, "admin token required (Authorization: Bearer, from data_dir/"+AdminTokenFile+")", http.StatusUnauthorized)
		return false
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return false
	}
	return true
}

// adminTokenOK compares a presented token with the admin token in
// constant time (both hashed first, so the length does not show either).
func (s *Server) adminTokenOK(tok string) bool {
	if s.adminToken == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(s.adminToken))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
