package server

import (
	"encoding/json"
	"net"
	"net/http"

	"github.com/palisade-im/palisade/server/module"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// AdminHeader must be present on administrative requests to the admin
// listener. A browser cannot add it to a cross-origin request without a
// CORS preflight, which the listener never grants, so a web page cannot
// drive the endpoints through a local browser.
const AdminHeader = "X-Palisade-Admin"

// KickResult is the JSON answer of POST /admin/kick.
type KickResult struct {
	JID    string `json:"jid"`
	Closed int    `json:"closed"`
}

// adminKick serves POST /admin/kick?jid=JID: it closes every session of a
// bare JID (or the one of a full JID) with a policy-violation stream error;
// resumption is refused. Only loopback clients sending AdminHeader may.
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

// adminAllowed admits POST requests with AdminHeader from loopback
// addresses, and answers the others.
func (s *Server) adminAllowed(w http.ResponseWriter, r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	ip := net.ParseIP(host)
	switch {
	case err != nil || ip == nil || !ip.IsLoopback():
		http.Error(w, "administrative requests are only accepted from loopback", http.StatusForbidden)
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
	case r.Header.Get(AdminHeader) == "":
		http.Error(w, AdminHeader+" header required", http.StatusForbidden)
	default:
		return true
	}
	return false
}
