// Package vcard implements XEP-0054 vcard-temp: each account stores one
// vCard that anyone may read and only its owner may change.
//
// The largest vCard accepted is the smaller of [modules.vcard] max_bytes
// and limits.max_vcard_bytes; a larger one is refused with not-acceptable
// and a text naming the limit, and the stored one is kept.
//
// It registers the module "vcard". vCards are kept in storage.Private under
// the key "vcard-temp:vCard".
package vcard

import (
	"context"
	"errors"
	"fmt"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/module"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
)

// NS is the vcard-temp namespace.
const NS = "vcard-temp"

// StorageKey is the storage.Private key of an account's vCard.
const StorageKey = "vcard-temp:vCard"

// Config is the [modules.vcard] section.
type Config struct {
	// MaxBytes is the largest serialized vCard accepted.
	MaxBytes int `toml:"max_bytes"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() *Config { return &Config{MaxBytes: 65536} }

// Validate checks the limits.
func (c *Config) Validate() error {
	if c.MaxBytes < 1 {
		return errors.New("max_bytes must be at least 1")
	}
	return nil
}

func init() {
	module.RegisterConfigured("vcard", DefaultConfig, func(h *module.Host, c Config) (any, error) {
		lim := config.Default().Limits
		if h.Config != nil {
			lim = h.Config.Limits
		}
		m, err := New(h.Store, h.Log, c, lim.MaxVCardBytes)
		if err != nil {
			return nil, err
		}
		m.rights, m.audit = h.Router, h.Audit // read-only accounts (readonly.go)
		return m, nil
	})
}

// Module stores and serves vCards.
type Module struct {
	store storage.Private
	log   *zap.Logger
	cfg   Config
	// rights and audit refuse and audit a read-only account's change
	// (readonly.go); nil rights: not checked.
	rights module.Router
	audit  *zap.Logger
	// quota is limits.max_vcard_bytes, the bytes one account's vCard
	// (with its XEP-0153 avatar) may take (0: no limit).
	quota int
}

var (
	_ module.IQHandlers = (*Module)(nil)
	_ module.Features   = (*Module)(nil)
)

// New builds the module; quota is limits.max_vcard_bytes (0: none).
// The largest vCard accepted is the smaller of it and cfg.MaxBytes.
func New(store storage.Private, log *zap.Logger, cfg Config, quota int) (*Module, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("vcard: %w", err)
	}
	return &Module{store: store, log: log, cfg: cfg, quota: quota}, nil
}

// IQRoutes implements module.IQHandlers.
func (m *Module) IQRoutes() []module.IQRoute {
	return []module.IQRoute{{Space: NS, Local: "vCard", Scope: module.ScopeAccount, Handle: m.handle}}
}

// ServerFeatures implements module.Features (XEP-0054 section 4 shows the
// feature on the server's domain).
func (m *Module) ServerFeatures() []string { return []string{NS} }

// AccountFeatures implements module.Features.
func (m *Module) AccountFeatures() []string { return []string{NS} }

func (m *Module) handle(ctx context.Context, _ module.Session, iq *stanza.Stanza) (*element.Element, error) {
	owner := iq.From.Bare().Equal(iq.To.Bare())
	user := iq.To.Bare().String()
	switch iq.Type {
	case "get":
		return m.get(ctx, user, owner)
	case "set":
		if !owner {
			// XEP-0054 section 3.2: another user's vCard.
			return nil, stanza.Err(stanza.Auth, stanza.Forbidden, "only the account's owner may change its vCard")
		}
		if se := m.readOnly(iq); se != nil {
			return nil, se
		}
		return nil, m.set(ctx, user, iq.Payload())
	}
	return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "")
}

// get returns the stored vCard. Without one the owner gets an empty
// <vCard/> (XEP-0054 section 3.1); anyone else gets service-unavailable,
// the same answer as for an account that does not exist (section 3.3).
func (m *Module) get(ctx context.Context, user string, owner bool) (*element.Element, error) {
	data, err := m.store.GetPrivate(ctx, user, StorageKey)
	if errors.Is(err, storage.ErrNotFound) {
		if owner {
			return element.New(NS, "vCard"), nil
		}
		return nil, stanza.Err(stanza.Cancel, stanza.ServiceUnavailable, "")
	}
	if err != nil {
		return nil, fmt.Errorf("vcard: load %s: %w", user, err)
	}
	el, err := parseElement(data)
	if err != nil || el.Space != NS || el.Local != "vCard" {
		m.log.Error("stored vCard is unreadable", zap.String("user", user), zap.Error(err))
		return nil, fmt.Errorf("vcard: stored vCard of %s is unreadable: %v", user, err)
	}
	return el, nil
}

// set replaces the vCard; an empty <vCard/> deletes it.
func (m *Module) set(ctx context.Context, user string, v *element.Element) error {
	var data []byte
	if len(v.Elements()) > 0 || len(v.Attrs) > 0 {
		data = []byte(v.String())
		if m.quota > 0 && len(data) > m.quota && m.quota <= m.cfg.MaxBytes {
			m.log.Debug("vCard refused: quota", zap.String("user", user), zap.Int("bytes", len(data)), zap.Int("limit", m.quota))
			return stanza.Err(stanza.Modify, stanza.NotAcceptable,
				fmt.Sprintf("vCard quota reached: an account's vCard may hold %d bytes (limits.max_vcard_bytes)", m.quota))
		}
		if len(data) > m.cfg.MaxBytes {
			return stanza.Err(stanza.Modify, stanza.NotAcceptable,
				fmt.Sprintf("the vCard is larger than %d bytes", m.cfg.MaxBytes))
		}
	}
	if err := m.store.SetPrivate(ctx, user, StorageKey, data); err != nil {
		return fmt.Errorf("vcard: store %s: %w", user, err)
	}
	m.log.Debug("vCard updated", zap.String("user", user), zap.Int("bytes", len(data)))
	return nil
}

// parseElement reads one serialized element.
func parseElement(b []byte) (*element.Element, error) {
	return element.Parse(b, "")
}
