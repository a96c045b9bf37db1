package server

import (
	"context"
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
	"strconv"
	"strings"

	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/storage"
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
	closed := s.Kick(j, orString(r.URL.Query().Get("by"), "admin-http"), "admin listener /admin/kick", zap.String("remote", r.RemoteAddr))
	w.Header().Set("Content-Type", "application/json")
	if closed == 0 {
		w.WriteHeader(http.StatusNotFound)
	}
	_ = json.NewEncoder(w).Encode(KickResult{JID: j.String(), Closed: closed})
}

// Kick ends every session of a local bare JID, or the one session of a
// full JID, with a policy-violation stream error; resumption is refused.
// It writes one session_kicked audit event naming the actor (who asked)
// and the reason (how), with extra fields, journals the act (kind admin)
// when the archive is on, and returns how many sessions it closed.
// `palisade user kick` (through /admin/kick) and the ad-hoc command "End
// User Session" both come here.
func (s *Server) Kick(j jid.JID, actor, reason string, extra ...zap.Field) int {
	n := s.endSessions(j, "policy-violation", "session ended by an administrator")
	fields := append([]zap.Field{zap.String("jid", j.String()), zap.Int("sessions", n),
		zap.String("actor", actor), zap.String("reason", reason)}, extra...)
	s.audit.Info("session_kicked", fields...)
	s.recordAct(context.Background(), "kick", actor, j.String(), map[string]string{"reason": reason, "sessions": strconv.Itoa(n)})
	return n
}

// endSessions closes the sessions of j (every one of a bare JID, attached
// or detached awaiting resumption) with a stream error; resumption is
// refused.
func (s *Server) endSessions(j jid.JID, condition, text string) int {
	var sessions []module.Session
	if j.Resourcepart() != "" {
		if sess := s.Session(j); sess != nil {
			sessions = append(sessions, sess)
		}
	} else {
		sessions = s.Sessions(j)
	}
	for _, sess := range sessions {
		sess.Close(condition, text)
	}
	return len(sessions)
}

// Account changes whose sessions /admin/end-sessions ends, with the
// stream error each gets.
//
// Both end with not-authorized (RFC 6120 4.9.3.14: the entity is not
// authorized for the stream), with a text saying which: the
// authentication the stream rests on no longer holds, for a new password
// as for an account that is gone. policy-violation (kicks, 4.9.3.12) would
// say the client broke a rule, which it did not; host-unknown and
// improper-addressing are about the domain, not the account. Prosody does
// the same (not-authorized, "Account deleted").
var accountChanges = map[string]string{
	"passwd": "the account's password was changed: log in again",
	"del":    "the account was deleted",
}

// EndSessionsResult is the JSON answer of POST /admin/end-sessions.
type EndSessionsResult struct {
	JID    string `json:"jid"`
	Change string `json:"change"`
	Closed int    `json:"closed"`
}

// adminEndSessions serves POST /admin/end-sessions?jid=BARE&change=passwd|del
// [&by=WHO]: after `palisade user passwd` or `user del` changed the store,
// every session of the account ends (attached ones with a not-authorized
// stream error, detached ones at once) and none may be resumed. One audit
// event, account_sessions_ended; the CLI journals the account change.
func (s *Server) adminEndSessions(w http.ResponseWriter, r *http.Request) {
	if !s.adminAllowed(w, r) {
		return
	}
	q := r.URL.Query()
	j, err := jid.Parse(q.Get("jid"))
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" || !s.IsLocal(j.Domainpart()) {
		http.Error(w, "jid: a local bare JID is required", http.StatusBadRequest)
		return
	}
	change := q.Get("change")
	text, ok := accountChanges[change]
	if !ok {
		http.Error(w, "change: passwd or del", http.StatusBadRequest)
		return
	}
	n := s.endSessions(j, "not-authorized", text)
	s.audit.Info("account_sessions_ended", zap.String("jid", j.String()), zap.String("change", change), zap.Int("sessions", n),
		zap.String("actor", orString(q.Get("by"), "admin-http")), zap.String("remote", r.RemoteAddr))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(EndSessionsResult{JID: j.String(), Change: change, Closed: n})
}

// CheckpointResult is the JSON answer of POST /archive/checkpoint.
type CheckpointResult struct {
	Size int64  `json:"size"`
	Note string `json:"note"`
}

// checkpointer is the archive module's CheckpointNow.
type checkpointer interface {
	CheckpointNow(ctx context.Context, actor string, atLeast int64) (storage.Checkpoint, error)
}

// adminCheckpoint serves POST /archive/checkpoint: the archive module
// issues a checkpoint of everything journaled so far (published to its
// sinks like every checkpoint) and the answer carries the latest signed
// note, which `palisade archive export` then proves its bundle against.
func (s *Server) adminCheckpoint(w http.ResponseWriter, r *http.Request) {
	if !s.adminAllowed(w, r) {
		return
	}
	var cp checkpointer
	for _, m := range s.modules {
		if c, ok := m.(checkpointer); ok {
			cp = c
		}
	}
	if cp == nil {
		http.Error(w, "the archive is off on this server", http.StatusConflict)
		return
	}
	actor := orString(r.URL.Query().Get("by"), "admin-http")
	// at_least: the journal's size as the CLI read it from disk.
	atLeast, _ := strconv.ParseInt(r.URL.Query().Get("at_least"), 10, 64)
	c, err := cp.CheckpointNow(r.Context(), actor, atLeast)
	if err != nil {
		s.log.Error("checkpoint on request failed", zap.Error(err))
		http.Error(w, "checkpoint: "+err.Error(), http.StatusInternalServerError)
		return
	}
	s.audit.Info("archive_checkpoint_requested", zap.String("actor", actor),
		zap.Int64("size", c.Size), zap.String("remote", r.RemoteAddr))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(CheckpointResult{Size: c.Size, Note: string(c.Note)})
}

// actRecorder is the archive module's RecordAdminAct.
type actRecorder interface {
	RecordAdminAct(ctx context.Context, act, actor, target string, details map[string]string) error
}

// recordAct journals an administrative act (kind admin) when the archive
// is on; a failure is logged and audited (admin_act_not_journaled): the
// act itself is done already.
func (s *Server) recordAct(ctx context.Context, act, actor, target string, details map[string]string) {
	for _, m := range s.modules {
		if rec, ok := m.(actRecorder); ok {
			if err := rec.RecordAdminAct(ctx, act, actor, target, details); err != nil {
				s.log.Error("administrative act not journaled", zap.String("act", act), zap.String("target", target), zap.Error(err))
				s.audit.Error("admin_act_not_journaled", zap.String("act", act), zap.String("actor", actor), zap.String("target", target), zap.Error(err))
			}
			return
		}
	}
}

func orString(v, d string) string {
	if v == "" {
		return d
	}
	return v
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
	actor := orString(r.URL.Query().Get("by"), "admin-http")
	s.audit.Info("user_unlock", zap.String("jid", j.String()), zap.Bool("had_failures", had),
		zap.String("actor", actor), zap.String("remote", r.RemoteAddr))
	s.recordAct(r.Context(), "unlock", actor, j.String(), map[string]string{"had_failures": strconv.FormatBool(had)})
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(UnlockResult{JID: j.String(), Unlocked: had})
}

// adminAllowed admits POST requests from loopback addresses that carry
// the admin token ("Authorization: Bearer TOKEN"), and answers the
// others; a refused token is audited.
func (s *Server) adminAllowed(w http.ResponseWriter, r *http.Request) bool {
	return s.adminAuthorized(w, r, http.MethodPost)
}

// adminAuthorized is adminAllowed for requests of the given method.
func (s *Server) adminAuthorized(w http.ResponseWriter, r *http.Request, method string) bool {
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
	if r.Method != method {
		w.Header().Set("Allow", method)
		http.Error(w, method+" only", http.StatusMethodNotAllowed)
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

// adminMetrics serves GET /metrics: the Prometheus exposition of the
// core's and the modules' metrics (server/metrics). It is an
// administrative request like the others on this listener (loopback and
// the admin token, "Authorization: Bearer TOKEN", which Prometheus sends
// with `authorization: {credentials_file: ...}`): the figures show who is
// active when, which /healthz does not. No label holds a JID.
func (s *Server) adminMetrics(w http.ResponseWriter, r *http.Request) {
	if !s.adminAuthorized(w, r, http.MethodGet) {
		return
	}
	s.metrics.Handler().ServeHTTP(w, r)
}
