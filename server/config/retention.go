package config

import (
	"slices"
	"strings"
)

// KeepFor returns the longest keep of the policies that apply to any of
// the parties (bare JIDs), and that policy's name; 0 when none applies.
// groups tells a party's Palisade groups for policies of scope "groups"
// (nil: such policies apply to no one).
func KeepFor(ps []Retention, groups func(bare string) []string, parties ...string) (days int, name string) {
	for _, p := range ps {
		if !applies(p, groups, parties) {
			continue
		}
		if p.KeepDays > days {
			days, name = p.KeepDays, p.Name
		}
	}
	return days, name
}

func applies(p Retention, groups func(string) []string, parties []string) bool {
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
	case ScopeGroups:
		if groups == nil {
			return false
		}
		for _, b := range parties {
			for _, g := range groups(b) {
				if slices.Contains(p.Groups, g) {
					return true
				}
			}
		}
	}
	return false
}
