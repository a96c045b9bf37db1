package ldap

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"
)

// watch follows the directory's changes with an RFC 4533 syncrepl
// refreshAndPersist search on each base DN, and asks for a sync round
// (through kick) whenever an entry is reported, so that a disable or a
// group change takes effect at once instead of at the next sync_interval.
// A directory without syncrepl is logged once and left to the interval; a
// lost connection is retried every sync_interval.
func (m *Module) watch(ctx context.Context, kick func()) {
	if m.cfg.ActiveDirectory {
		m.watchBase(ctx, namingContext(m.cfg.BaseDN), kick)
		return
	}
	bases := []string{m.cfg.BaseDN}
	if g := m.cfg.GroupBaseDN; g != "" && !strings.EqualFold(g, m.cfg.BaseDN) && !isUnder(g, m.cfg.BaseDN) {
		bases = append(bases, g)
	}
	var wg sync.WaitGroup
	for _, base := range bases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.watchBase(ctx, base, kick)
		}()
	}
	wg.Wait()
}

// isUnder reports whether dn lies inside base.
func isUnder(dn, base string) bool {
	d, err1 := goldap.ParseDN(dn)
	b, err2 := goldap.ParseDN(base)
	return err1 == nil && err2 == nil && b.AncestorOfFold(d)
}

func (m *Module) watchBase(ctx context.Context, base string, kick func()) {
	retry := time.Duration(m.cfg.SyncInterval)
	for ctx.Err() == nil {
		supported, err := m.watchOnce(ctx, base, kick)
		if ctx.Err() != nil {
			return
		}
		if !supported {
			m.log.Info("directory offers no change notification (syncrepl, or DirSync on Active Directory); changes are found every sync_interval",
				zap.String("base", base), zap.Error(err))
			return
		}
		m.log.Warn("directory change notification lost; retrying", zap.String("base", base),
			zap.Duration("retry", retry), zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
		kick() // whatever changed meanwhile
	}
}

// watchOnce runs one persistent search until it fails; supported is false
// when the directory refuses syncrepl itself.
func (m *Module) watchOnce(ctx context.Context, base string, kick func()) (supported bool, err error) {
	c, err := m.dir.dial()
	if err != nil {
		return true, err
	}
	defer c.Close()
	c.SetTimeout(0) // the search persists
	p := &pooled{c: c}
	if err := m.dir.ensureService(p); err != nil {
		return true, err
	}
	if m.cfg.ActiveDirectory {
		return m.dirSync(ctx, dirSyncConn{c}, base, dirSyncPoll, kick)
	}
	req := goldap.NewSearchRequest(base, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=*)", []string{"1.1"}, nil)
	r := c.Syncrepl(ctx, req, 64, goldap.SyncRequestModeRefreshAndPersist, nil, false)
	m.log.Info("following directory changes (syncrepl)", zap.String("base", base))
	for r.Next() {
		if r.Entry() != nil {
			kick()
		}
	}
	err = r.Err()
	if goldap.IsErrorAnyOf(err, goldap.LDAPResultUnavailableCriticalExtension, goldap.LDAPResultProtocolError,
		goldap.LDAPResultUnwillingToPerform, goldap.LDAPResultInsufficientAccessRights) {
		return false, err
	}
	return true, err
}

// Active Directory has no syncrepl. Its DirSync control (MS-ADTS 3.1.1.3.4.1.3)
// returns what changed since a cookie; the watcher polls it every
// dirSyncPoll, so a disable or a group change is acted on within seconds.
// DirSync needs the root of a naming context as its base and the
// "Replicating Directory Changes" right (with LDAP_DIRSYNC_OBJECT_SECURITY,
// only for objects the service account may read).
const (
	dirSyncPoll           = 5 * time.Second
	dirSyncObjectSecurity = 0x1        // LDAP_DIRSYNC_OBJECT_SECURITY
	dirSyncMoreData       = 0x1        // flag in the response: call again at once
	dirSyncMaxBytes       = 0x7FFFFFFF // the response size AD may choose
)

// dirSyncer is the part of a connection DirSync polling needs.
type dirSyncer interface {
	Search(*goldap.SearchRequest) (*goldap.SearchResult, error)
}

type dirSyncConn struct{ c *goldap.Conn }

func (d dirSyncConn) Search(r *goldap.SearchRequest) (*goldap.SearchResult, error) {
	return d.c.Search(r)
}

// dirSyncRequest is one DirSync search from cookie (nil: the first,
// which returns everything).
func dirSyncRequest(base string, cookie []byte) *goldap.SearchRequest {
	return goldap.NewSearchRequest(base, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0, 0, false,
		"(|(objectClass=user)(objectClass=group))", []string{"objectGUID"},
		[]goldap.Control{goldap.NewRequestControlDirSync(dirSyncObjectSecurity, dirSyncMaxBytes, cookie)})
}

// dirSync reads the directory once to get a cookie, then polls for
// changes until ctx ends or a search fails; a change asks for a sync
// round. supported is false when the directory refuses the control.
func (m *Module) dirSync(ctx context.Context, c dirSyncer, base string, poll time.Duration, kick func()) (supported bool, err error) {
	var cookie []byte
	first := true
	for ctx.Err() == nil {
		res, err := c.Search(dirSyncRequest(base, cookie))
		if goldap.IsErrorAnyOf(err, goldap.LDAPResultUnavailableCriticalExtension, goldap.LDAPResultProtocolError,
			goldap.LDAPResultUnwillingToPerform, goldap.LDAPResultInsufficientAccessRights) {
			return false, err
		}
		if err != nil {
			return true, err
		}
		ctrl, _ := goldap.FindControl(res.Controls, goldap.ControlTypeDirSync).(*goldap.ControlDirSync)
		if ctrl == nil {
			return false, errors.New("ldap: the directory answered DirSync without its control")
		}
		if first {
			m.log.Info("following directory changes (DirSync)", zap.String("base", base))
		} else if len(res.Entries) > 0 {
			kick()
		}
		cookie = ctrl.Cookie
		if ctrl.Flags&dirSyncMoreData != 0 {
			continue // the rest of this round at once
		}
		first = false
		select {
		case <-ctx.Done():
		case <-time.After(poll):
		}
	}
	return true, ctx.Err()
}

// namingContext is the domain root of an Active Directory DN: its
// trailing DC= components (DirSync's base must be a naming context).
func namingContext(dn string) string {
	parsed, err := goldap.ParseDN(dn)
	if err != nil {
		return dn
	}
	var dcs []string
	for i := len(parsed.RDNs) - 1; i >= 0; i-- {
		rdn := parsed.RDNs[i]
		if len(rdn.Attributes) != 1 || !strings.EqualFold(rdn.Attributes[0].Type, "dc") {
			break
		}
		dcs = append([]string{"DC=" + goldap.EscapeDN(rdn.Attributes[0].Value)}, dcs...)
	}
	if len(dcs) == 0 {
		return dn
	}
	return strings.Join(dcs, ",")
}
