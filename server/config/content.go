package config

import (
	"regexp"
	"slices"
	"strings"
)

// Content is the [content] section: data loss prevention rules that
// modules/content applies to the messages local accounts send.
type Content struct {
	// Rules are the [[content.rule]] entries, each checked on its own.
	Rules []ContentRule `toml:"rule"`
}

// ContentRule is one [[content.rule]]: a matcher, whom it applies to and
// what happens on a match.
type ContentRule struct {
	// Name identifies the rule in refusals, audit events and journal
	// flags.
	Name string `toml:"name"`
	// Regex is an RE2 expression matched against the message's text.
	Regex string `toml:"regex"`
	// Detector is a validated detector: "card_number" (Luhn and card
	// number ranges), "iban" (ISO 13616 mod-97) or "us_ssn".
	Detector string `toml:"detector"`
	// URLDomains blocks links to these domains and their subdomains.
	URLDomains []string `toml:"url_domains"`
	// URLExtensions blocks links whose path ends in one of these file
	// extensions (".exe").
	URLExtensions []string `toml:"url_extensions"`
	// Groups are the [groups] whose members' messages the rule reads;
	// empty: every local account's.
	Groups []string `toml:"groups"`
	// Direction is "internal" (to local accounts), "partners" (to
	// federation partners) or "both" (default).
	Direction string `toml:"direction"`
	// Action is "block" (refused with policy-violation and Text), "flag"
	// (delivered, its journal record flagged for review) or "log"
	// (delivered, one audit event).
	Action string `toml:"action"`
	// Text is the refusal text of a block; default names the rule.
	Text string `toml:"text"`
}

// Content rule directions and actions.
const (
	DirectionInternal = "internal"
	DirectionPartners = "partners"
	DirectionBoth     = "both"

	ContentBlock = "block"
	ContentFlag  = "flag"
	ContentLog   = "log"
)

// ContentDetectors are the detector names a rule may use.
func ContentDetectors() []string { return []string{"card_number", "iban", "us_ssn"} }

// DirectionOf returns Direction, "both" when unset.
func (r ContentRule) DirectionOf() string {
	if r.Direction == "" {
		return DirectionBoth
	}
	return r.Direction
}

// contentNameRE is what a rule name may be: it appears in journal flags
// and search arguments.
var contentNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// validateContent checks each [[content.rule]].
func (l *loader) validateContent(c *Config) {
	seen := map[string]bool{}
	for i, r := range c.Content.Rules {
		key := elemKey("content.rule", i)
		switch {
		case r.Name == "":
			l.invalid(key+".name", -1, "a rule needs a name")
		case !contentNameRE.MatchString(r.Name):
			l.invalid(key+".name", -1, "%q: use lower-case letters, digits, '_', '.' and '-' (up to 64)", r.Name)
		case seen[r.Name]:
			l.invalid(key+".name", -1, "%q names another rule too", r.Name)
		}
		seen[r.Name] = true
		matchers := 0
		if r.Regex != "" {
			matchers++
			if _, err := regexp.Compile(r.Regex); err != nil {
				l.invalid(key+".regex", -1, "%s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			}
		}
		if r.Detector != "" {
			matchers++
			if !slices.Contains(ContentDetectors(), r.Detector) {
				l.invalid(key+".detector", -1, `must be "card_number", "iban" or "us_ssn", got %q`, r.Detector)
			}
		}
		if len(r.URLDomains) > 0 || len(r.URLExtensions) > 0 {
			matchers++
		}
		for j, d := range r.URLDomains {
			if d == "" || strings.ContainsAny(d, "/:@ ") || d != strings.ToLower(d) {
				l.invalid(key+".url_domains", j, "%q is not a lower-case domain name", d)
			}
		}
		for j, x := range r.URLExtensions {
			if len(x) < 2 || x[0] != '.' || strings.ContainsAny(x[1:], "./ ") {
				l.invalid(key+".url_extensions", j, "%q is not an extension like \".exe\"", x)
			}
		}
		if matchers != 1 {
			l.invalid(key, -1, "set exactly one matcher: regex, detector, or url_domains/url_extensions")
		}
		for j, g := range r.Groups {
			if _, ok := c.Groups[g]; !ok {
				l.invalid(key+".groups", j, "unknown group %q (define it in [groups])", g)
			}
		}
		if r.Direction != "" && !slices.Contains([]string{DirectionInternal, DirectionPartners, DirectionBoth}, r.Direction) {
			l.invalid(key+".direction", -1, `must be "internal", "partners" or "both", got %q`, r.Direction)
		}
		if !slices.Contains([]string{ContentBlock, ContentFlag, ContentLog}, r.Action) {
			l.invalid(key+".action", -1, `must be "block", "flag" or "log", got %q`, r.Action)
		}
	}
}
