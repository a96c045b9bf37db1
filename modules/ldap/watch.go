package ldap

import (
	"context"
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
			m.log.Info("directory offers no syncrepl change notification; changes are found every sync_interval",
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
