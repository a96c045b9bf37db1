// Package server assembles Palisade: it builds the modules, wires their
// hooks into the stanza path (stamp, policy chain, journal, router,
// delivery) and runs the listeners.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-im/palisade/certs"
	"github.com/palisade-im/palisade/s2s"
	"github.com/palisade-im/palisade/server/c2s"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/metrics"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/router"
	"github.com/palisade-im/palisade/server/sasl"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

type iqKey struct {
	space, local string
	scope        module.Scope
}

// Server is a configured Palisade instance.
type Server struct {
	cfg   *config.Config
	store storage.Store
	log   *zap.Logger
	audit *zap.Logger
	kp    *certs.Keypair
	table *router.Table
	c2s   *c2s.Server
	host  *module.Host

	modules    []any
	names      []string
	iq         map[iqKey]module.IQFunc
	preAuth    map[string]module.PreAuthIQHandler
	policies   []module.Policy
	policyName []string
	journal    module.Journal
	presence   module.PresenceHandler
	sessObs    []module.SessionObserver
	presObs    []module.PresenceObserver
	bcastObs   []module.BroadcastObserver
	requests   requests
	msgObs     []module.MessageObserver
	offline    module.OfflineStore
	archiver   module.MessageArchiver
	features   []module.StreamFeatures
	auths      map[string]module.Authenticator // by provider name
	groupSrc   []module.GroupSource
	lockout    *lockout
	domains    map[string]bool
	// stanzaRights: some access rule restricts sending (send, federate,
	// encryption_required); encryptionRules: some requires end-to-end
	// encryption, so messages are inspected for it.
	stanzaRights, encryptionRules bool

	// adminToken authenticates administrative requests to the admin
	// listener (data_dir/admin.token); "" refuses them all.
	adminToken string

	// posture is what weakens compliance (posture.go), fixed at New.
	posture []Warning

	// federation is the live [federation] section: ReloadFederation
	// swaps it.
	federation atomic.Pointer[config.Federation]
	s2s        *s2s.Server
	fedListen  federationListeners

	healthMu   sync.Mutex
	unhealthy  map[string]string // component -> problem
	journalBad atomic.Bool

	// metrics is this server's Prometheus registry (GET /metrics).
	metrics *metrics.Metrics
}

// noJournal is the journal step until the archive module replaces it.
type noJournal struct{}

func (noJournal) Append(context.Context, *stanza.Stanza) error { return nil }

// New builds the server and its modules. It does not listen yet.
func New(cfg *config.Config, store storage.Store, log *zap.Logger) (*Server, error) {
	kp, err := certs.LoadOrCreate(cfg.Server.DataDir, cfg.Server.Domains, cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("server: TLS certificate: %w", err)
	}
	s := &Server{
		cfg: cfg, store: store, log: log, audit: log.Named("audit").With(zap.Bool("audit", true)),
		kp: kp, table: router.NewTable(), iq: map[iqKey]module.IQFunc{},
		preAuth: map[string]module.PreAuthIQHandler{}, journal: noJournal{}, domains: map[string]bool{},
	}
	for _, d := range cfg.Server.Domains {
		s.domains[d] = true
	}
	fed := cfg.Federation
	s.federation.Store(&fed)
	s.posture = postureOf(cfg, kp.Leaf(), cfg.TLS.CertFile == "")
	s.stanzaRights, s.encryptionRules = stanzaRightsOf(cfg.Access)
	s.lockout = newLockout(cfg.Auth, s.audit)
	if err := s.lockout.persist(context.Background(), store, log); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.host = module.NewHost(s, store, log, s.audit, cfg, func() []any { return s.modules })
	s.host.SetHealth = s.SetHealth
	s.metrics = metrics.New(append([]string{"access", "federation"}, policyOrder...))
	s.host.Metrics = s.metrics.Registerer()
	s.host.AuthorizeLogin = func(ctx context.Context, bare jid.JID, remote string) error {
		_, err := s.authorizeLogin(ctx, bare, remote)
		return err
	}
	s.host.Kick = func(j jid.JID, actor, reason string) int { return s.Kick(j, actor, reason) }
	if err := s.buildModules(); err != nil {
		return nil, err
	}
	if err := s.newFederation(); err != nil {
		return nil, err
	}
	tlsCfg := certs.ServerConfig(kp)
	leafEP := func() []byte { return certs.TLSServerEndPoint(kp.Leaf()) }
	s.c2s = c2s.New(c2s.Config{
		Domains:       cfg.Server.Domains,
		TLS:           tlsCfg,
		Leaf:          leafEP,
		MaxStanza:     int64(cfg.Limits.MaxStanzaBytes),
		PreauthStanza: int64(cfg.Limits.PreauthStanzaBytes),
		MaxElements:   cfg.Limits.MaxStanzaElements,
		AuthTimeout:   time.Duration(cfg.Limits.AuthTimeout),
		IdleTimeout:   time.Duration(cfg.Limits.IdleTimeout),
		PingTimeout:   time.Duration(cfg.Limits.PingTimeout),
		SendQueue:     cfg.Limits.SendQueue,
		ResumeTimeout: time.Duration(cfg.Limits.ResumeTimeout),
		MaxSessions:   cfg.Limits.MaxSessionsPerUser,

		SendQueueBytes:    cfg.Limits.SendQueueBytes,
		AccountQueueBytes: cfg.Limits.AccountQueueBytes,

		RegistrationTimeout: time.Duration(cfg.Limits.RegistrationTimeout),

		MaxUnauthenticated:      cfg.Limits.MaxUnauthenticated,
		MaxUnauthenticatedPerIP: cfg.Limits.MaxUnauthenticatedPerIP,
		ConnectionRatePerIP:     cfg.Limits.ConnectionRatePerIP,
		ConnectionBurstPerIP:    cfg.Limits.ConnectionBurstPerIP,
		ReadBytesPerSecond:      cfg.Limits.ReadBytesPerSecond,
		ReadBurstBytes:          cfg.Limits.ReadBurstBytes,
		Metrics:                 s.metrics,
	}, handler{s}, s.table, log.Named("c2s"), s.audit)
	return s, nil
}

func (s *Server) buildModules() error {
	for _, info := range module.Registered() {
		var cfg any
		if sec, ok := s.cfg.Modules[info.Name]; ok {
			cfg = sec.Value
		} else if info.Config != nil {
			cfg = info.Config()
		}
		m, err := info.New(s.host, cfg)
		if err != nil {
			return fmt.Errorf("module %s: %w", info.Name, err)
		}
		s.modules = append(s.modules, m)
		s.names = append(s.names, info.Name)
	}
	policies := map[string]module.Policy{}
	for i, m := range s.modules {
		name := s.names[i]
		if h, ok := m.(module.IQHandlers); ok {
			for _, r := range h.IQRoutes() {
				for _, sc := range []module.Scope{module.ScopeServer, module.ScopeAccount} {
					if r.Scope&sc == 0 {
						continue
					}
					k := iqKey{r.Space, r.Local, sc}
					if _, dup := s.iq[k]; dup {
						return fmt.Errorf("module %s: IQ %s %s handled twice", name, r.Space, r.Local)
					}
					s.iq[k] = r.Handle
				}
			}
		}
		if h, ok := m.(module.PreAuthIQHandler); ok {
			s.preAuth[h.PreAuthSpace()] = h
		}
		if p, ok := m.(module.Policy); ok {
			policies[name] = p
		}
		if j, ok := m.(module.Journal); ok {
			s.journal = j
		}
		if p, ok := m.(module.PresenceHandler); ok {
			if s.presence != nil {
				return fmt.Errorf("module %s: a second presence handler", name)
			}
			s.presence = p
		}
		if o, ok := m.(module.SessionObserver); ok {
			s.sessObs = append(s.sessObs, o)
		}
		if o, ok := m.(module.PresenceObserver); ok {
			s.presObs = append(s.presObs, o)
		}
		if o, ok := m.(module.BroadcastObserver); ok {
			s.bcastObs = append(s.bcastObs, o)
		}
		if o, ok := m.(module.MessageObserver); ok {
			s.msgObs = append(s.msgObs, o)
		}
		if o, ok := m.(module.OfflineStore); ok {
			s.offline = o
		}
		if a, ok := m.(module.MessageArchiver); ok {
			if s.archiver != nil {
				return fmt.Errorf("module %s: a second message archiver", name)
			}
			s.archiver = a
		}
		if f, ok := m.(module.StreamFeatures); ok {
			s.features = append(s.features, f)
		}
		if g, ok := m.(module.GroupSource); ok {
			s.groupSrc = append(s.groupSrc, g)
		}
		if a, ok := m.(module.Authenticator); ok {
			if s.auths == nil {
				s.auths = map[string]module.Authenticator{}
			}
			s.auths[a.Provider()] = a
		}
	}
	for _, p := range s.cfg.Auth.Providers {
		if p != "internal" && s.auths[p] == nil {
			return fmt.Errorf("auth.providers: no module provides %q", p)
		}
	}
	for _, name := range policyOrder {
		if p, ok := policies[name]; ok {
			s.policies = append(s.policies, p)
			s.policyName = append(s.policyName, name)
			delete(policies, name)
		}
	}
	for name := range policies {
		return fmt.Errorf("module %s implements a policy but is not listed in server/chain.go", name)
	}
	return nil
}

// Run listens on the configured addresses and serves until ctx ends, then
// drains sessions and stops the modules.
func (s *Server) Run(ctx context.Context) error {
	s.auditPosture()
	var started []any
	for _, m := range s.modules {
		if st, ok := m.(module.Starter); ok {
			if err := st.Start(ctx); err != nil {
				return fmt.Errorf("server: start module: %w", err)
			}
		}
		started = append(started, m)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := len(started) - 1; i >= 0; i-- {
			if st, ok := started[i].(module.Stopper); ok {
				if err := st.Stop(sctx); err != nil {
					s.log.Warn("module stop failed", zap.Error(err))
				}
			}
		}
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	listen := func(what, addr string, serve func(net.Listener) error) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("server: listen %s on %s: %w", what, addr, err)
		}
		s.log.Info("listening", zap.String("listener", what), zap.String("addr", ln.Addr().String()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve(ln); err != nil {
				errc <- fmt.Errorf("server: %s: %w", what, err)
			}
		}()
		return nil
	}
	l := s.cfg.Listen
	var httpServers []*http.Server
	err := errors.Join(
		listen("c2s", l.C2S, func(ln net.Listener) error { return s.c2s.ServeTCP(ctx, ln, false) }),
		listen("c2s_direct_tls", l.C2SDirectTLS, func(ln net.Listener) error { return s.c2s.ServeTCP(ctx, ln, true) }),
	)
	if err == nil && l.WebSocket != "" {
		mux := http.NewServeMux()
		mux.Handle("/xmpp-websocket", s.c2s.WebSocketHandler(ctx, true))
		mux.HandleFunc("/.well-known/host-meta", s.hostMeta) // XEP-0156 (hostmeta.go)
		mux.HandleFunc("/.well-known/host-meta.json", s.hostMeta)
		var tlsCfg *tls.Config
		if !l.WebSocketPlain {
			tlsCfg = certs.ServerConfig(s.kp)
		}
		hs := newHTTPServer(mux, tlsCfg, s.log.Named("http"))
		httpServers = append(httpServers, hs)
		err = listen("websocket", l.WebSocket, func(ln net.Listener) error {
			if l.WebSocketPlain {
				ln = s.c2s.ProxiedListener(ctx, ln) // behind a proxy: no per-address limits
			} else {
				ln = s.c2s.Listener(ctx, ln) // counted under the client connection cap
			}
			var e error
			if l.WebSocketPlain {
				e = hs.Serve(ln)
			} else {
				e = hs.ServeTLS(ln, "", "")
			}
			if errors.Is(e, http.ErrServerClosed) {
				return nil
			}
			return e
		})
	}
	if err == nil && l.Admin != "" {
		tok, replaced, terr := LoadOrCreateAdminToken(s.cfg.Server.DataDir)
		if terr != nil {
			err = fmt.Errorf("server: admin listener: %w", terr)
		} else if replaced {
			s.log.Warn("admin token replaced: the old file was readable by others or damaged", zap.String("file", filepath.Join(s.cfg.Server.DataDir, AdminTokenFile)))
		}
		s.adminToken = tok
	}
	if err == nil && l.Admin != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", s.healthz)
		mux.HandleFunc("/admin/kick", s.adminKick)
		mux.HandleFunc("/admin/unlock", s.adminUnlock)
		mux.HandleFunc("/admin/end-sessions", s.adminEndSessions)
		mux.HandleFunc("/archive/checkpoint", s.adminCheckpoint)
		mux.HandleFunc("/admin/federation", s.adminFederation)
		mux.HandleFunc("/metrics", s.adminMetrics) // admin.go
		hs := newHTTPServer(mux, nil, s.log.Named("admin"))
		httpServers = append(httpServers, hs)
		err = listen("admin", l.Admin, func(ln net.Listener) error {
			if e := hs.Serve(ln); !errors.Is(e, http.ErrServerClosed) {
				return e
			}
			return nil
		})
	}
	if err == nil {
		s.fedListen.mu.Lock()
		s.fedListen.run, s.fedListen.listen = ctx, listen
		s.fedListen.mu.Unlock()
		err = s.openFederation()
	}
	if err != nil {
		// A listener could not be opened: close the ones that were, HTTP
		// servers included (they do not watch ctx), and report it.
		cancel()
		for _, hs := range httpServers {
			_ = hs.Close()
		}
		s.c2s.Shutdown(context.Background())
		s.s2s.Shutdown(context.Background())
		wg.Wait()
		return err
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.log.Info("shutting down", zap.Int("sessions", s.table.Total()))
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	for _, hs := range httpServers {
		_ = hs.Shutdown(sctx)
	}
	s.c2s.Shutdown(sctx)
	s.s2s.Shutdown(sctx)
	cancel()
	wg.Wait()
	return err
}

// healthz answers JSON: {"status": "ok", "warnings": [...]}, 200; or
// {"status": "unhealthy", "problems": "...", "warnings": [...]}, 503. A
// posture warning never makes it fail.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	res := struct {
		Status   string    `json:"status"`
		Problems string    `json:"problems,omitempty"`
		Warnings []Warning `json:"warnings"`
	}{Status: "ok", Warnings: s.Posture()}
	code := http.StatusOK
	if bad := s.Health(); bad != "" {
		res.Status, res.Problems, code = "unhealthy", bad, http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(res)
}

// SetHealth records a failing component; problem "" clears it.
func (s *Server) SetHealth(component, problem string) {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if problem == "" {
		delete(s.unhealthy, component)
		return
	}
	if s.unhealthy == nil {
		s.unhealthy = map[string]string{}
	}
	s.unhealthy[component] = problem
}

// Health describes every failing component, "" when all are well.
func (s *Server) Health() string {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	parts := make([]string, 0, len(s.unhealthy))
	for c, p := range s.unhealthy {
		parts = append(parts, c+": "+p)
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// IsLocal reports whether the domain is served here.
func (s *Server) IsLocal(domain string) bool { return s.domains[domain] }

// Sessions returns the sessions of a bare JID.
func (s *Server) Sessions(bare jid.JID) []module.Session { return s.table.Sessions(bare) }

// Session returns the session bound to a full JID.
func (s *Server) Session(full jid.JID) module.Session { return s.table.Session(full) }

// UserExists reports whether a local account exists.
func (s *Server) UserExists(ctx context.Context, bare jid.JID) (bool, error) {
	if !s.IsLocal(bare.Domainpart()) || bare.Localpart() == "" {
		return false, nil
	}
	_, err := s.store.GetUser(ctx, bare.Localpart(), bare.Domainpart())
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// mechanisms lists SASL mechanisms for the configured providers, strongest
// first. A domain whose accounts may come from an external provider (LDAP)
// offers PLAIN only: the directory needs the password itself. The c2s
// layer offers mechanisms only after TLS.
func (s *Server) mechanisms(domain string, b sasl.Binding) []sasl.Mechanism {
	internal, external := false, false
	for _, p := range s.cfg.Auth.Providers {
		if p == "internal" {
			internal = true
		} else if a := s.auths[p]; a != nil && a.ServesDomain(domain) {
			external = true
		}
	}
	if external {
		return []sasl.Mechanism{sasl.Plain(s.checkPassword(domain))}
	}
	if !internal {
		return nil
	}
	lookup := s.credentials(domain)
	var out []sasl.Mechanism
	if b.Exporter != nil || b.EndPoint != nil {
		out = append(out, sasl.SCRAM("SHA-256", true, lookup), sasl.SCRAM("SHA-1", true, lookup))
	}
	return append(out, sasl.SCRAM("SHA-256", false, lookup), sasl.SCRAM("SHA-1", false, lookup),
		sasl.Plain(sasl.CheckWithCredentials("SHA-256", lookup)))
}

// credentials looks up the stored SCRAM credentials of internal accounts.
func (s *Server) credentials(domain string) sasl.CredentialLookup {
	return func(ctx context.Context, username, hash string) (storage.Credentials, error) {
		u, err := s.store.GetUser(ctx, username, domain)
		if err != nil {
			return storage.Credentials{}, err
		}
		c, ok := u.SCRAM[hash]
		if !ok {
			return storage.Credentials{}, storage.ErrNotFound
		}
		return c, nil
	}
}

// checkPassword verifies a PLAIN password against the providers in
// auth.providers order: the first one that knows the account decides. An
// external provider that fails (directory unreachable) does not stop the
// search, so internal service accounts keep working; if no later provider
// knows the account, the failure is reported (temporary-auth-failure).
func (s *Server) checkPassword(domain string) sasl.PasswordCheck {
	internal := sasl.CheckWithCredentials("SHA-256", s.credentials(domain))
	return func(ctx context.Context, username, password string) (bool, error) {
		var backendErr error
		for _, p := range s.cfg.Auth.Providers {
			if p == "internal" {
				_, err := s.store.GetUser(ctx, username, domain)
				if errors.Is(err, storage.ErrNotFound) {
					continue
				}
				if err != nil {
					return false, fmt.Errorf("internal accounts: %w", err)
				}
				return internal(ctx, username, password)
			}
			a := s.auths[p]
			if a == nil || !a.ServesDomain(domain) {
				continue
			}
			err := a.CheckPassword(ctx, domain, username, password)
			var refused *module.LoginRefused
			switch {
			case err == nil:
				return true, nil
			case errors.Is(err, module.ErrUnknownUser):
				continue
			case errors.As(err, &refused):
				return false, &sasl.Failure{Condition: refused.Condition, Err: fmt.Errorf("%s: %s", p, refused.Reason)}
			default:
				backendErr = errors.Join(backendErr, fmt.Errorf("%s: %w", p, err))
			}
		}
		if backendErr != nil {
			return false, backendErr
		}
		return false, nil
	}
}

func (s *Server) streamFeatures(authenticated bool) []*element.Element {
	var out []*element.Element
	for _, f := range s.features {
		out = append(out, f.StreamFeatures(authenticated)...)
	}
	return out
}
