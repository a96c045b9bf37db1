package config

import (
	"slices"
	"strings"
)

// KeepFor returns the longest keep of the policies that apply to any of
// the parties (bare JIDs), and that policy's name; 0 when none applies.
func KeepFor(ps []Retention, parties ...string) (days int, name string) {
	for _, p := range ps {
		if !applies(p, parties) {
			continue
		}
		if p.KeepDays > days {
			days, name = p.KeepDays, p.Name
		}
	}
	return days, name
}

func applies(p Retention, parties []string) bool {
	switch p.Scope {
	case ScopeAll:
		return true
	case ScopeDomain:
		for _, b := range parties {
			if _, dom, ok := strings.Cut(b, "@"); ok && dom == p.Domain || b == p.Domain {
				return true
			}
		}
	case ScopeJIDs:
		for _, b := range parties {
			if slices.Contains(p.JIDs, b) {
				return true
			}
		}
	}
	// ScopeGroups: directory groups are not resolved yet (the
	// configuration refuses the scope).
	return false
}
