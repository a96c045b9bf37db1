package pep

import (
	"slices"
	"strconv"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
)

// Node configuration fields (XEP-0060 section 16.4.4).
const (
	fAccessModel   = "pubsub#access_model"
	fRosterGroups  = "pubsub#roster_groups_allowed"
	fMaxItems      = "pubsub#max_items"
	fPersistItems  = "pubsub#persist_items"
	fSendLast      = "pubsub#send_last_published_item"
	fNotifyRetract = "pubsub#notify_retract"
	// Fields whose value is fixed here: accepted when they ask for it.
	fDeliverNotifications = "pubsub#deliver_notifications"
	fDeliverPayloads      = "pubsub#deliver_payloads"
	fNotifyDelete         = "pubsub#notify_delete"
)

// fixedTrue are the options that are always on.
var fixedTrue = []string{fDeliverNotifications, fDeliverPayloads, fNotifyDelete}

// defaultConfig is a new node's configuration (XEP-0163 section 5:
// presence access, last item sent on subscription and presence).
func defaultConfig() storage.NodeConfig {
	return storage.NodeConfig{
		AccessModel:       storage.AccessPresence,
		MaxItems:          1,
		PersistItems:      true,
		SendLastPublished: storage.SendLastOnSubAndPresence,
		NotifyRetract:     true,
	}
}

// fields are the submitted values of a data form, by var.
type fields map[string][]string

// readForm reads a submitted data form (XEP-0004) whose FORM_TYPE, when
// given, is formType. It returns nil fields for a cancelled form.
func readForm(x *element.Element, formType string) (fields, *stanza.Error) {
	if x == nil || x.Space != NSData || x.Local != "x" {
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "a jabber:x:data form is required")
	}
	switch x.Attr("type") {
	case "submit":
	case "cancel":
		return nil, nil
	default:
		return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "the form must be of type submit")
	}
	out := fields{}
	for _, f := range x.Elements() {
		if f.Space != NSData || f.Local != "field" {
			continue
		}
		v := f.Attr("var")
		var vals []string
		for _, val := range f.Elements() {
			if val.Space == NSData && val.Local == "value" {
				vals = append(vals, val.Text())
			}
		}
		if v == "FORM_TYPE" {
			if len(vals) != 1 || vals[0] != formType {
				return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "FORM_TYPE must be "+formType)
			}
			continue
		}
		if v == "" {
			return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "a form field without var")
		}
		if _, dup := out[v]; dup {
			return nil, stanza.Err(stanza.Modify, stanza.BadRequest, "field "+v+" given twice")
		}
		out[v] = vals
	}
	return out, nil
}

func notAcceptable(text string) *stanza.Error {
	return stanza.Err(stanza.Modify, stanza.NotAcceptable, text)
}

// parseBool reads an XEP-0004 boolean.
func parseBool(vals []string) (bool, bool) {
	if len(vals) != 1 {
		return false, false
	}
	switch vals[0] {
	case "1", "true":
		return true, true
	case "0", "false":
		return false, true
	}
	return false, false
}

// apply sets the submitted fields on cfg. A field it does not know or a
// value it cannot take is not-acceptable, and cfg is then unchanged.
func (m *Module) apply(cfg *storage.NodeConfig, f fields) *stanza.Error {
	c := *cfg
	c.RosterGroupsAllowed = slices.Clone(cfg.RosterGroupsAllowed)
	for v, vals := range f {
		one := ""
		if len(vals) == 1 {
			one = vals[0]
		}
		switch v {
		case fAccessModel:
			switch one {
			case storage.AccessOpen, storage.AccessPresence, storage.AccessRoster, storage.AccessWhitelist:
				c.AccessModel = one
			default:
				return notAcceptable("unsupported access model " + strconv.Quote(one))
			}
		case fRosterGroups:
			g := slices.Clone(vals)
			slices.Sort(g)
			c.RosterGroupsAllowed = slices.Compact(g)
		case fMaxItems:
			if one == "max" {
				c.MaxItems = m.cfg.MaxItems
				break
			}
			n, err := strconv.Atoi(one)
			if err != nil || n < 1 || n > m.cfg.MaxItems {
				return notAcceptable("pubsub#max_items must be 1 to " + strconv.Itoa(m.cfg.MaxItems) + " or max")
			}
			c.MaxItems = n
		case fPersistItems:
			b, ok := parseBool(vals)
			if !ok {
				return notAcceptable("pubsub#persist_items must be a boolean")
			}
			c.PersistItems = b
		case fSendLast:
			switch one {
			case storage.SendLastNever, storage.SendLastOnSub, storage.SendLastOnSubAndPresence:
				c.SendLastPublished = one
			default:
				return notAcceptable("unsupported pubsub#send_last_published_item " + strconv.Quote(one))
			}
		case fNotifyRetract:
			b, ok := parseBool(vals)
			if !ok {
				return notAcceptable("pubsub#notify_retract must be a boolean")
			}
			c.NotifyRetract = b
		case fDeliverNotifications, fDeliverPayloads, fNotifyDelete:
			if b, ok := parseBool(vals); !ok || !b {
				return notAcceptable(v + " is always true here")
			}
		default:
			return notAcceptable("unsupported node option " + v)
		}
	}
	*cfg = c
	return nil
}

// satisfies reports whether cfg already has every publish option in f
// (XEP-0060 section 7.1.5, XEP-0223): applying them changes nothing.
func (m *Module) satisfies(cfg storage.NodeConfig, f fields) bool {
	want := cfg
	if m.apply(&want, f) != nil {
		return false
	}
	return sameConfig(want, cfg)
}

func sameConfig(a, b storage.NodeConfig) bool {
	ga, gb := slices.Clone(a.RosterGroupsAllowed), slices.Clone(b.RosterGroupsAllowed)
	slices.Sort(ga)
	slices.Sort(gb)
	return a.AccessModel == b.AccessModel && a.MaxItems == b.MaxItems && a.PersistItems == b.PersistItems &&
		a.SendLastPublished == b.SendLastPublished && a.NotifyRetract == b.NotifyRetract && slices.Equal(ga, gb)
}

// configForm renders cfg as a node_config form (XEP-0060 section 8.2).
func configForm(cfg storage.NodeConfig) *element.Element {
	x := element.New(NSData, "x", element.A("type", "form"))
	field := func(v, typ, label string, vals ...string) *element.Element {
		f := element.New(NSData, "field", element.A("var", v), element.A("type", typ))
		if label != "" {
			f.SetAttr("label", label)
		}
		for _, val := range vals {
			f.Append(element.New(NSData, "value").SetText(val))
		}
		x.Append(f)
		return f
	}
	options := func(f *element.Element, opts ...string) {
		for _, o := range opts {
			f.Append(element.New(NSData, "option").Append(element.New(NSData, "value").SetText(o)))
		}
	}
	boolean := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	field("FORM_TYPE", "hidden", "", NSNodeConfig)
	options(field(fAccessModel, "list-single", "Who may retrieve items", cfg.AccessModel),
		storage.AccessOpen, storage.AccessPresence, storage.AccessRoster, storage.AccessWhitelist)
	field(fRosterGroups, "list-multi", "Roster groups allowed to retrieve items", cfg.RosterGroupsAllowed...)
	field(fMaxItems, "text-single", "Most items kept", strconv.Itoa(cfg.MaxItems))
	field(fPersistItems, "boolean", "Keep items", boolean(cfg.PersistItems))
	options(field(fSendLast, "list-single", "When to send the last published item", cfg.SendLastPublished),
		storage.SendLastNever, storage.SendLastOnSub, storage.SendLastOnSubAndPresence)
	field(fNotifyRetract, "boolean", "Notify retractions", boolean(cfg.NotifyRetract))
	for _, v := range fixedTrue {
		field(v, "boolean", "", "1")
	}
	return x
}
