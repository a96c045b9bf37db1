package server

import (
	"context"
	"errors"

	"github.com/palisade-im/palisade/server/config"
)

// partnerFor returns the partner entry of the live (reloadable) partner
// list that names domain, nil when none does.
func (s *Server) partnerFor(domain string) *config.Partner {
	f := s.federation.Load()
	if f == nil {
		return nil
	}
	return f.Partner(domain)
}

// ReloadFederation replaces the partner list (SIGHUP): streams of
// domains no longer allowed are closed with the stream error
// policy-violation.
func (s *Server) ReloadFederation(ctx context.Context, f config.Federation) error {
	return errors.New("server: federation reload is not built yet")
}
