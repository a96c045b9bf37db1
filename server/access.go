package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/sasl"
	"mellium.im/xmpp/jid"
)

// groupsOf unites what every GroupSource says of an account.
func (s *Server) groupsOf(bare jid.JID) []string {
	var out []string
	for _, g := range s.groupSrc {
		for _, name := range g.Groups(bare) {
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	return out
}

// Rights returns the rights of an account: those of the first
// [[access.rule]] whose jid or group matches it, else [access] default.
// rule is the index of that rule, -1 for the default.
func (s *Server) Rights(bare jid.JID) (r config.Rights, rule int) {
	var groups []string
	looked := false
	for i, rl := range s.cfg.Access.Rules {
		if rl.JID != "" {
			if rl.JID == bare.String() {
				return rl.Rights, i
			}
			continue
		}
		if !looked {
			groups, looked = s.groupsOf(bare), true
		}
		if slices.Contains(groups, rl.Group) {
			return rl.Rights, i
		}
	}
	return s.cfg.Access.Default, -1
}

// authorizeLogin applies the access rights to a login from remote and
// returns them.
func (s *Server) authorizeLogin(_ context.Context, bare jid.JID, remote string) (config.Rights, error) {
	r, rule := s.Rights(bare)
	which := "access.default"
	if rule >= 0 {
		which = "access.rule " + strconv.Itoa(rule+1)
	}
	if !r.MayLogin() {
		return config.Rights{}, &sasl.Failure{Condition: sasl.NotAuthorized, Err: fmt.Errorf("%s: login not allowed", which)}
	}
	if len(r.Networks) > 0 {
		host, _, err := net.SplitHostPort(remote)
		if err != nil {
			host = remote
		}
		ip := net.ParseIP(host)
		allowed := false
		for _, n := range r.Networks {
			if _, cidr, err := net.ParseCIDR(n); err == nil && ip != nil && cidr.Contains(ip) {
				allowed = true
				break
			}
		}
		if !allowed {
			return config.Rights{}, &sasl.Failure{Condition: sasl.NotAuthorized, Err: fmt.Errorf("%s: login from %s is outside the allowed networks", which, host)}
		}
	}
	return r, nil
}
