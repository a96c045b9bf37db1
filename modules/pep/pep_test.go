package pep

import (
	"testing"

	"github.com/palisade-im/palisade/server/element"
	"github.com/palisade-im/palisade/server/stanza"
	"github.com/palisade-im/palisade/storage"
	"mellium.im/xmpp/jid"
)

func testModule() *Module {
	return &Module{cfg: Config{MaxItems: 100, MaxNodes: 10, MaxPayloadBytes: 1000}}
}

func form(t *testing.T, xml string) *element.Element {
	t.Helper()
	el, err := element.Parse([]byte(xml), "")
	if err != nil {
		t.Fatal(err)
	}
	return el
}

func TestApplyAndSatisfies(t *testing.T) {
	m := testModule()
	cfg := defaultConfig()
	f := fields{fAccessModel: {"open"}, fMaxItems: {"max"}, fPersistItems: {"true"}, fSendLast: {"never"}}
	if m.satisfies(cfg, f) {
		t.Fatal("default config satisfies open/max/never")
	}
	if se := m.apply(&cfg, f); se != nil {
		t.Fatal(se)
	}
	if cfg.AccessModel != storage.AccessOpen || cfg.MaxItems != 100 || cfg.SendLastPublished != storage.SendLastNever || !cfg.PersistItems {
		t.Errorf("applied: %+v", cfg)
	}
	if !m.satisfies(cfg, f) || !m.satisfies(cfg, nil) {
		t.Error("config does not satisfy what was applied to it")
	}
	if !m.satisfies(cfg, fields{fDeliverPayloads: {"1"}, fMaxItems: {"100"}}) {
		t.Error("fixed option or numeric max not satisfied")
	}
	for name, bad := range map[string]fields{
		"unknown field":      {"pubsub#title": {"x"}},
		"bad access":         {fAccessModel: {"authorize"}},
		"max_items 0":        {fMaxItems: {"0"}},
		"max_items too big":  {fMaxItems: {"101"}},
		"bool":               {fNotifyRetract: {"yes"}},
		"fixed false":        {fDeliverNotifications: {"0"}},
		"two access values":  {fAccessModel: {"open", "presence"}},
		"bad send_last":      {fSendLast: {"always"}},
		"persist two values": {fPersistItems: {"1", "0"}},
	} {
		before := cfg
		if se := m.apply(&cfg, bad); se == nil || se.Condition != stanza.NotAcceptable {
			t.Errorf("%s: apply = %v, want not-acceptable", name, se)
		}
		if !sameConfig(before, cfg) {
			t.Errorf("%s: a rejected form changed the config", name)
		}
		if m.satisfies(cfg, bad) {
			t.Errorf("%s: satisfied", name)
		}
	}
	// Roster groups compare as sets.
	if se := m.apply(&cfg, fields{fRosterGroups: {"b", "a", "b"}}); se != nil {
		t.Fatal(se)
	}
	if !m.satisfies(cfg, fields{fRosterGroups: {"a", "b"}}) || m.satisfies(cfg, fields{fRosterGroups: {"a"}}) {
		t.Errorf("roster groups %v", cfg.RosterGroupsAllowed)
	}
}

func TestReadForm(t *testing.T) {
	const ft = NSPublishOption
	f, se := readForm(form(t, `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>`+ft+`</value></field>`+
		`<field var='pubsub#access_model'><value>open</value></field></x>`), ft)
	if se != nil || len(f) != 1 || f[fAccessModel][0] != "open" {
		t.Fatalf("readForm = %v, %v", f, se)
	}
	f, se = readForm(form(t, `<x xmlns='jabber:x:data' type='cancel'/>`), ft)
	if se != nil || f != nil {
		t.Errorf("cancel = %v, %v", f, se)
	}
	for name, x := range map[string]string{
		"wrong FORM_TYPE": `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x>`,
		"type form":       `<x xmlns='jabber:x:data' type='form'/>`,
		"duplicate field": `<x xmlns='jabber:x:data' type='submit'><field var='a'/><field var='a'/></x>`,
		"field no var":    `<x xmlns='jabber:x:data' type='submit'><field/></x>`,
		"not a form":      `<y xmlns='urn:other'/>`,
	} {
		if _, se := readForm(form(t, x), ft); se == nil || se.Condition != stanza.BadRequest {
			t.Errorf("%s: %v, want bad-request", name, se)
		}
	}
}

func TestConfigFormRoundTrip(t *testing.T) {
	m := testModule()
	cfg := defaultConfig()
	cfg.AccessModel = storage.AccessRoster
	cfg.RosterGroupsAllowed = []string{"Friends"}
	cfg.MaxItems = 7
	x := configForm(cfg)
	x.SetAttr("type", "submit")
	f, se := readForm(x, NSNodeConfig)
	if se != nil {
		t.Fatal(se)
	}
	got := defaultConfig()
	if se := m.apply(&got, f); se != nil {
		t.Fatalf("the server's own form is not accepted back: %v", se)
	}
	if !sameConfig(got, cfg) {
		t.Errorf("round trip: %+v, want %+v", got, cfg)
	}
}

func TestBlocked(t *testing.T) {
	to := jid.MustParse("bob@example.com/phone")
	for _, c := range []struct {
		list []string
		want bool
	}{
		{nil, false},
		{[]string{"bob@example.com"}, true},
		{[]string{"bob@example.com/phone"}, true},
		{[]string{"bob@example.com/laptop"}, false},
		{[]string{"example.com"}, true},
		{[]string{"example.com/phone"}, true},
		{[]string{"other.example"}, false},
		{[]string{"carol@example.com", "not a jid@@"}, false},
	} {
		if got := blocked(c.list, to); got != c.want {
			t.Errorf("blocked(%v) = %v, want %v", c.list, got, c.want)
		}
	}
}

func TestInterestsAndCapsCache(t *testing.T) {
	i := interestsOf([]string{"urn:a", "urn:a+notify", "urn:b+notify", "+notify"})
	if len(i) != 2 || !i["urn:a"] || !i["urn:b"] {
		t.Errorf("interests = %v", i)
	}
	c := newCapsCache(2)
	c.put("sha-1", "v1", interests{"a": true})
	c.put("sha-1", "v2", interests{"b": true})
	c.put("sha-1", "v3", interests{"c": true})
	if _, ok := c.get("sha-1", "v1"); ok {
		t.Error("oldest entry not evicted")
	}
	if got, ok := c.get("sha-1", "v3"); !ok || !got["c"] {
		t.Error("newest entry missing")
	}
	if _, ok := c.get("sha-256", "v3"); ok {
		t.Error("entries are keyed by hash too")
	}
	wait, done := c.claim("sha-1", "v9")
	if wait != nil || done == nil {
		t.Fatal("first claim must query")
	}
	wait2, done2 := c.claim("sha-1", "v9")
	if wait2 == nil || done2 != nil {
		t.Fatal("second claim must wait")
	}
	done()
	select {
	case <-wait2:
	default:
		t.Fatal("waiter not released")
	}
	if w, d := c.claim("sha-1", "v9"); w != nil || d == nil {
		t.Fatal("claim after done must query again")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{{MaxItems: 0, MaxNodes: 1, MaxPayloadBytes: 1}, {MaxItems: 1, MaxNodes: 0, MaxPayloadBytes: 1}, {MaxItems: 1, MaxNodes: 1}} {
		if c.Validate() == nil {
			t.Errorf("%+v validated", c)
		}
	}
}
