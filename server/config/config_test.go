package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// registerConfig is a fake module config with a Validate method.
type registerConfig struct {
	Allow      bool     `toml:"allow"`
	MaxPerHour int      `toml:"max_per_hour"`
	Cooldown   Duration `toml:"cooldown"`
}

func (r *registerConfig) Validate() error {
	if r.MaxPerHour < 0 {
		return errors.New("max_per_hour must not be negative")
	}
	return nil
}

// versionConfig is a fake module config without Validate.
type versionConfig struct {
	Hide bool `toml:"hide"`
}

// fakeRegistry knows "register" and "version" and implements only Registry.
type fakeRegistry struct{}

func (fakeRegistry) ModuleConfig(name string) (any, bool) {
	switch name {
	case "register":
		return &registerConfig{MaxPerHour: 5, Cooldown: Duration(time.Minute)}, true
	case "version":
		return &versionConfig{}, true
	}
	return nil, false
}

func testRegistry() StaticRegistry {
	return StaticRegistry{
		"register": func() any { return &registerConfig{MaxPerHour: 5, Cooldown: Duration(time.Minute)} },
		"version":  func() any { return &versionConfig{} },
	}
}

func TestDefaults(t *testing.T) {
	for name, doc := range map[string]string{"empty": "", "comment only": "# nothing\n", "empty sections": "[server]\n[limits]\n[modules]\n"} {
		t.Run(name, func(t *testing.T) {
			cfg, err := Parse("t.toml", []byte(doc), testRegistry())
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			want.Path = "t.toml"
			sum := sha256.Sum256([]byte(doc))
			want.SHA256 = hex.EncodeToString(sum[:])
			want.Modules = map[string]Section{
				"register": {Name: "register", Value: &registerConfig{MaxPerHour: 5, Cooldown: Duration(time.Minute)}},
				"version":  {Name: "version", Value: &versionConfig{}},
			}
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("got  %+v\nwant %+v", cfg, want)
			}
		})
	}
	d := Default()
	if d.Path != "" || d.Server.DataDir != "./data" || d.Server.Domains[0] != "localhost" ||
		time.Duration(d.Limits.IdleTimeout) != 300*time.Second || d.Auth.SCRAMIterations != 4096 ||
		d.Listen.WebSocket != "127.0.0.1:5280" || d.Log.Format != "json" || d.Log.Level != "info" {
		t.Errorf("unexpected defaults: %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestParseValues(t *testing.T) {
	doc := `
[server]
domains = ["example.org", "chat.example.org"]
data_dir = "/var/lib/palisade"

[listen]
c2s = ":5222"
c2s_direct_tls = ""
websocket = "[::1]:5280"
websocket_plain = true

[tls]
cert_file = "cert.pem"
key_file = "key.pem"

[limits]
max_stanza_bytes = 65536
idle_timeout = "10m"

[log]
format = "console"
level = "debug"

[auth]
providers = ["ldap", "internal"]
scram_iterations = 10000

[modules.register]
allow = true
`
	cfg, err := Parse("t.toml", []byte(doc), fakeRegistry{})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Server.Domains; !reflect.DeepEqual(got, []string{"example.org", "chat.example.org"}) {
		t.Errorf("domains = %q", got)
	}
	if cfg.Listen.C2S != ":5222" || cfg.Listen.C2SDirectTLS != "" || cfg.Listen.Admin != "127.0.0.1:5281" || !cfg.Listen.WebSocketPlain {
		t.Errorf("listen = %+v", cfg.Listen)
	}
	if cfg.Limits.MaxStanzaBytes != 65536 || time.Duration(cfg.Limits.IdleTimeout) != 10*time.Minute ||
		time.Duration(cfg.Limits.AuthTimeout) != 30*time.Second {
		t.Errorf("limits = %+v", cfg.Limits)
	}
	if !reflect.DeepEqual(cfg.Auth.Providers, []string{"ldap", "internal"}) || cfg.Auth.SCRAMIterations != 10000 {
		t.Errorf("auth = %+v", cfg.Auth)
	}
	s, ok := cfg.Modules["register"]
	if !ok {
		t.Fatal("no register section")
	}
	if rc := s.Value.(*registerConfig); !rc.Allow || rc.MaxPerHour != 5 || s.Line != 28 || s.Name != "register" {
		t.Errorf("register section = %+v (%+v)", s, rc)
	}
	// fakeRegistry does not list its modules: absent ones are not filled in.
	if _, ok := cfg.Modules["version"]; ok {
		t.Error("version section without a ModuleLister")
	}
}

func TestModuleForms(t *testing.T) {
	for name, doc := range map[string]string{
		"table":        "[modules.register]\nallow = true\n",
		"dotted":       "[modules]\nregister.allow = true\n",
		"inline":       "modules = { register = { allow = true } }\n",
		"top dotted":   "modules.register.allow = true\n",
		"inline in mt": "[modules]\nregister = { allow = true }\n",
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := Parse("t.toml", []byte(doc), testRegistry())
			if err != nil {
				t.Fatal(err)
			}
			s := cfg.Modules["register"]
			if !s.Value.(*registerConfig).Allow || s.Line == 0 {
				t.Errorf("register = %+v", s)
			}
			if v := cfg.Modules["version"]; v.Line != 0 || v.Value.(*versionConfig).Hide {
				t.Errorf("version = %+v", v)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{
			name: "unknown top-level key",
			doc:  "[server]\ndomains = [\"a.example\"]\n\nbogus = 1\n",
			want: []string{`t.toml:4:1: server.bogus: unknown key`},
		},
		{
			name: "unknown top-level table",
			doc:  "# c\n[srv]\nx = 1\n",
			want: []string{`t.toml:2:2: srv: unknown key`},
		},
		{
			name: "archive checkpoint interval too short",
			doc:  "[archive]\nenabled = true\ncheckpoint_interval = \"10ms\"\nbogus = 1\n",
			want: []string{`t.toml:3:1: archive.checkpoint_interval: must be at least 1s, got 10ms`, `t.toml:4:1: archive.bogus: unknown key`},
		},
		{
			name: "retention by groups",
			doc: "[groups]\ndesk = \"cn=desk,dc=x\"\n\n[[archive.retention]]\nname = \"g\"\nscope = \"groups\"\ngroups = [\"desk\", \"nope\"]\nkeep_days = 10\n" +
				"[[archive.retention]]\nname = \"j\"\nscope = \"all\"\ngroups = [\"desk\"]\nkeep_days = 10\n",
			want: []string{
				`t.toml:7:1: archive.retention[0].groups: group "nope" is not defined in [groups]`,
				`t.toml:12:1: archive.retention[1].groups: only applies to scope "groups"`,
			},
		},
		{
			name: "archive retention and holds",
			doc: "[[archive.retention]]\nname = \"a\"\nscope = \"all\"\nkeep_days = 10\nlocked = true\n" +
				"[[archive.retention]]\nname = \"a\"\nscope = \"jids\"\njids = [\"Bob@x\"]\nkeep_days = 0\nbogus = 1\n" +
				"[[archive.retention]]\nname = \"g\"\nscope = \"groups\"\nkeep_days = \"x\"\n" +
				"[[archive.hold]]\nname = \"h\"\ncustodians = [\"a@x/r\"]\nfrom = \"2026-02-01\"\nto = \"2026-01-01\"\n",
			want: []string{
				`t.toml:7:1: archive.retention[1].name: duplicate retention policy name "a"`,
				`t.toml:9:9: archive.retention[1].jids: "Bob@x" is not normalized (write "bob@x")`,
				`t.toml:10:1: archive.retention[1].keep_days: must be between 1 and 36500, got 0`,
				`t.toml:11:1: archive.retention[1].bogus: unknown key`,
				`t.toml:12:3: archive.retention[2].groups: must list at least one group when scope is "groups"`,
				`t.toml:15:13: archive.retention[2].keep_days: expected an integer, got string`,
				`t.toml:16:3: archive.hold[0].reason: every legal hold needs a reason`,
				`t.toml:18:15: archive.hold[0].custodians: "a@x/r" is not a bare user JID (user@domain)`,
				`t.toml:20:1: archive.hold[0].to: 2026-01-01 is before from (2026-02-01)`,
			},
		},
		{
			name: "archive sinks",
			doc:  "[archive]\ncheckpoint_syslog = \"smtp://x\"\ncheckpoint_urls = [\"https://w.example/add\", \"ftp://x\"]\n",
			want: []string{`t.toml:2:1: archive.checkpoint_syslog: must be "local", "udp://HOST:PORT", "tcp://HOST:PORT" or "unix:///PATH", got "smtp://x"`,
				`t.toml:3:45: archive.checkpoint_urls: "ftp://x" is not an http:// or https:// URL`},
		},
		{
			name: "archive witnesses",
			doc: "[[archive.witness]]\nurl = \"http://w.example:7380\"\nkey = \"" + witnessVkey + "\"\n" +
				"[[archive.witness]]\nurl = \"ftp://x\"\nkey = \"" + witnessVkey + "\"\nrequired = \"yes\"\n" +
				"[[archive.witness]]\nurl = \"https://w3.example\"\nkey = \"w3.example+00000000+AQ==\"\nbogus = 1\n" +
				"[[archive.witness]]\nkey = \"localhost/palisade-journal+4a0a0c72+ASKnFk8n0hRhdtsEnF9oz2zYfg7KERNzIPlgNPvZIlQv\"\n" +
				"[[archive.witness]]\nurl = \"http://[::1]:7380/w\"\n",
			want: []string{
				`t.toml:2:1: archive.witness[0].url: plain http:// only to a loopback address, not "w.example": use https://`,
				`t.toml:5:1: archive.witness[1].url: "ftp://x" is not an http:// or https:// URL without query`,
				`t.toml:6:1: archive.witness[1].key: witness "w.example/w1" is already archive.witness[0]`,
				`t.toml:7:12: archive.witness[1].required: expected a boolean, got string`,
				`t.toml:10:1: archive.witness[2].key: key type 1 is not a cosignature/v1 key (type 4)`,
				`t.toml:11:1: archive.witness[2].bogus: unknown key`,
				`t.toml:12:3: archive.witness[3].url: every witness needs a url`,
				`t.toml:13:1: archive.witness[3].key: key type 1 is not a cosignature/v1 key (type 4)`,
				`t.toml:14:3: archive.witness[4].key: every witness needs its cosignature verifier key`,
			},
		},
		{
			name: "unknown root key",
			doc:  "debug = true\n",
			want: []string{`t.toml:1:1: debug: unknown key`},
		},
		{
			name: "unknown key in inline table",
			doc:  "limits = { send_queue = 5, bogus = 1 }\n",
			want: []string{`t.toml:1:28: limits.bogus: unknown key`},
		},
		{
			name: "unknown module with odd name",
			doc:  "[modules.\"a,b\"]\nx = 1\n",
			want: []string{`t.toml:1:10: modules.a,b: unknown module`},
		},
		{
			name: "unknown module inline",
			doc:  "modules = { foo = { a = 1 }, register = { allow = true } }\n",
			want: []string{`t.toml:1:13: modules.foo: unknown module`},
		},
		{
			name: "redefined table stops decoding",
			doc:  "[server]\n[server]\n[log]\nlevel = \"x\"\n",
			want: []string{`t.toml:2:2: server: table server already exists`},
		},
		{
			name: "unknown key in section",
			doc:  "[server]\ndomian = \"x\"\n",
			want: []string{`t.toml:2:1: server.domian: unknown key`},
		},
		{
			name: "wrong type string for int",
			doc:  "[limits]\n\nmax_stanza_bytes = \"big\"\n",
			want: []string{`t.toml:3:20: limits.max_stanza_bytes: expected an integer, got string`},
		},
		{
			name: "wrong type in inline table",
			doc:  "limits = { send_queue = true }\n",
			want: []string{`t.toml:1:25: limits.send_queue: expected an integer, got boolean`},
		},
		{
			name: "wrong array element",
			doc:  "[server]\ndomains = [\"a.example\", 3]\n",
			want: []string{`t.toml:2:25: server.domains: expected a string in the array, got integer`},
		},
		{
			name: "string for array",
			doc:  "[server]\ndomains = \"a.example\"\n",
			want: []string{`t.toml:2:11: server.domains: expected an array, got string`},
		},
		{
			name: "bad duration",
			doc:  "[limits]\nauth_timeout = \"30 seconds\"\n",
			want: []string{`t.toml:2:16: limits.auth_timeout: invalid duration "30 seconds" (write e.g. "30s", "5m" or "1h")`},
		},
		{
			name: "integer duration",
			doc:  "[limits]\nidle_timeout = 300\n",
			want: []string{`t.toml:2:1: limits.idle_timeout: expected a duration string such as "30s", got integer`},
		},
		{
			name: "negative duration",
			doc:  "[limits]\nping_timeout = \"-1s\"\n",
			want: []string{`t.toml:2:1: limits.ping_timeout: must be a positive duration, got -1s`},
		},
		{
			name: "syntax error",
			doc:  "[server]\ndomains = [\"a\"\n",
			want: []string{`t.toml:2:15: invalid TOML: array is incomplete`},
		},
		{
			name: "duplicate key",
			doc:  "[log]\nlevel = \"info\"\nlevel = \"debug\"\n",
			want: []string{`t.toml:3:1: log.level: key level is already defined`},
		},
		{
			name: "no domains",
			doc:  "[server]\ndomains = []\n",
			want: []string{`t.toml:2:1: server.domains: at least one domain is required`},
		},
		{
			name: "bad domains",
			doc:  "[server]\ndomains = [\n  \"ok.example\",\n  \"Upper.example\",\n  \"sp ace\",\n  \"ok.example\",\n  \"a..b\",\n  \"example.org.\",\n  \"xn--bcher-kva.example\",\n]\n",
			want: []string{
				`t.toml:4:3: server.domains: "Upper.example" is not a normalized domain (write "upper.example")`,
				`t.toml:5:3: server.domains: "sp ace" is not a valid domain: idna: disallowed rune U+0020`,
				`t.toml:6:3: server.domains: duplicate domain "ok.example"`,
				`t.toml:7:3: server.domains: "a..b" is not a valid domain: empty label`,
				`t.toml:8:3: server.domains: "example.org." is not a normalized domain (write "example.org")`,
				`t.toml:9:3: server.domains: "xn--bcher-kva.example" is not a normalized domain (write "bücher.example")`,
			},
		},
		{
			name: "empty data dir",
			doc:  "[server]\ndata_dir = \"\"\n",
			want: []string{`t.toml:2:1: server.data_dir: must not be empty`},
		},
		{
			name: "bad listen address",
			doc:  "[listen]\nc2s = \"localhost\"\n",
			want: []string{`t.toml:2:1: listen.c2s: "localhost" is not a valid host:port address: address localhost: missing port in address`},
		},
		{
			name: "bad port",
			doc:  "[listen]\nadmin = \"127.0.0.1:0\"\nwebsocket = \"127.0.0.1:http\"\n",
			want: []string{
				`t.toml:2:1: listen.admin: "127.0.0.1:0": port must be a number between 1 and 65535`,
				`t.toml:3:1: listen.websocket: "127.0.0.1:http": port must be a number between 1 and 65535`,
			},
		},
		{
			name: "same address twice",
			doc:  "[listen]\nc2s = \"127.0.0.1:5222\"\nadmin = \"127.0.0.1:5222\"\n",
			want: []string{`t.toml:3:1: listen.admin: address "127.0.0.1:5222" is already used by listen.c2s`},
		},
		{
			name: "websocket_plain on public address",
			doc:  "[listen]\nwebsocket = \"0.0.0.0:5280\"\nwebsocket_plain = true\n",
			want: []string{`t.toml:3:1: listen.websocket_plain: may only be true when listen.websocket is a loopback address, not "0.0.0.0:5280"`},
		},
		{
			name: "cert without key",
			doc:  "[tls]\ncert_file = \"c.pem\"\n",
			want: []string{`t.toml:1:2: tls.key_file: must be set when tls.cert_file is set`},
		},
		{
			name: "key without cert",
			doc:  "[tls]\n\nkey_file = \"k.pem\"\n",
			want: []string{`t.toml:1:2: tls.cert_file: must be set when tls.key_file is set`},
		},
		{
			name: "stanza size",
			doc:  "[limits]\nmax_stanza_bytes = 100\n",
			want: []string{`t.toml:2:1: limits.max_stanza_bytes: must be between 1024 and 16777216`},
		},
		{
			name: "dotted key position",
			doc:  "# limits\nlimits.max_stanza_bytes = 100000000\n",
			want: []string{`t.toml:2:1: limits.max_stanza_bytes: must be between 1024 and 16777216`},
		},
		{
			name: "counts",
			doc:  "[limits]\nsend_queue = 0\nmax_offline_messages = -1\nmax_sessions_per_user = 0\n",
			want: []string{
				`t.toml:2:1: limits.send_queue: must be at least 1, got 0`,
				`t.toml:3:1: limits.max_offline_messages: must be at least 1, got -1`,
				`t.toml:4:1: limits.max_sessions_per_user: must be at least 1, got 0`,
			},
		},
		{
			name: "log",
			doc:  "[log]\nformat = \"text\"\nlevel = \"trace\"\n",
			want: []string{
				`t.toml:2:1: log.format: must be "json" or "console", got "text"`,
				`t.toml:3:1: log.level: must be one of "debug", "info", "warn", "error", got "trace"`,
			},
		},
		{
			name: "providers",
			doc:  "[auth]\nproviders = [\"internal\", \"pam\", \"internal\"]\nscram_iterations = 1000\n",
			want: []string{
				`t.toml:2:26: auth.providers: unknown provider "pam" (known: internal, ldap)`,
				`t.toml:2:33: auth.providers: duplicate provider "internal"`,
				`t.toml:3:1: auth.scram_iterations: must be at least 4096, got 1000`,
			},
		},
		{
			name: "no providers",
			doc:  "[auth]\nproviders = []\n",
			want: []string{`t.toml:2:1: auth.providers: at least one provider is required`},
		},
		{
			name: "unknown module",
			doc:  "[modules.register]\nallow = true\n\n[modules.foo]\nbar = 1\n",
			want: []string{`t.toml:4:10: modules.foo: unknown module`},
		},
		{
			name: "unknown key in module",
			doc:  "[modules.register]\nallow = true\nalow = false\n",
			want: []string{`t.toml:3:1: modules.register.alow: unknown key`},
		},
		{
			name: "wrong type in module",
			doc:  "[modules.version]\nhide = \"yes\"\n",
			want: []string{`t.toml:2:8: modules.version.hide: expected a boolean, got string`},
		},
		{
			name: "integer duration in module",
			doc:  "[modules.register]\ncooldown = 60\n",
			want: []string{`t.toml:2:1: modules.register.cooldown: expected a duration string such as "30s", got integer`},
		},
		{
			name: "module Validate",
			doc:  "# modules\n\n[modules.register]\nmax_per_hour = -1\n",
			want: []string{`t.toml:3:10: modules.register: max_per_hour must not be negative`},
		},
		{
			name: "module not a table",
			doc:  "[modules]\nversion = 3\n",
			want: []string{`t.toml:2:11: modules.version: expected a table, got integer`},
		},
		{
			name: "several errors sorted by line",
			doc: `[server]
domains = ["example.org", "example.org"]
typo = 1

[limits]
max_stanza_bytes = "x"
auth_timeout = "soon"
send_queue = 0

[log]
level = "loud"

[modules.register]
allow = 1
nope = true

[modules.nothere]
`,
			want: []string{
				`t.toml:2:27: server.domains: duplicate domain "example.org"`,
				`t.toml:3:1: server.typo: unknown key`,
				`t.toml:6:20: limits.max_stanza_bytes: expected an integer, got string`,
				`t.toml:7:16: limits.auth_timeout: invalid duration "soon" (write e.g. "30s", "5m" or "1h")`,
				`t.toml:8:1: limits.send_queue: must be at least 1, got 0`,
				`t.toml:11:1: log.level: must be one of "debug", "info", "warn", "error", got "loud"`,
				`t.toml:14:9: modules.register.allow: expected a boolean, got integer`,
				`t.toml:15:1: modules.register.nope: unknown key`,
				`t.toml:17:10: modules.nothere: unknown module`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("t.toml", []byte(tt.doc), testRegistry())
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("config returned with an error")
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, not *Errors: %v", err, err)
			}
			got := strings.Split(err.Error(), "\n")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, e := range *errs {
				if e.File != "t.toml" || e.Line == 0 {
					t.Errorf("error without file or line: %#v", e)
				}
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{File: "p.toml", Line: 12, Col: 1, Key: "limits.max_stanza_bytes", Msg: "must be between 1024 and 16777216"},
			"p.toml:12:1: limits.max_stanza_bytes: must be between 1024 and 16777216"},
		{Error{File: "p.toml", Line: 7, Key: "server.domian", Msg: "unknown key"}, "p.toml:7: server.domian: unknown key"},
		{Error{File: "p.toml", Key: "log.level", Msg: "bad"}, "p.toml: log.level: bad"},
		{Error{Key: "log.level", Msg: "bad"}, "log.level: bad"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestValidateInCode(t *testing.T) {
	c := Default()
	c.Server.Domains = nil
	c.Log.Level = "x"
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	want := "log.level: must be one of \"debug\", \"info\", \"warn\", \"error\", got \"x\"\nserver.domains: at least one domain is required"
	if err.Error() != want {
		t.Errorf("got %q", err.Error())
	}
}

func TestNilRegistry(t *testing.T) {
	cfg, err := Parse("t.toml", []byte("[server]\n"), nil)
	if err != nil || len(cfg.Modules) != 0 {
		t.Fatalf("cfg %+v, err %v", cfg, err)
	}
	_, err = Parse("t.toml", []byte("[modules.version]\n"), nil)
	if err == nil || err.Error() != "t.toml:1:10: modules.version: unknown module" {
		t.Errorf("err = %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "palisade.toml")
	if err := os.WriteFile(path, []byte("[server]\ndomains = [\"example.net\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, testRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != path || cfg.Server.Domains[0] != "example.net" {
		t.Errorf("cfg = %+v", cfg)
	}
	if err := os.WriteFile(path, []byte("[server]\ndomians = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, testRegistry()); err == nil || err.Error() != path+":2:1: server.domians: unknown key" {
		t.Errorf("err = %v", err)
	}
	_, err = Load(filepath.Join(dir, "missing.toml"), nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
}

// olderKeys are keys still read but replaced by others: the example
// file describes them in its comments instead of setting them.
var olderKeys = map[string]bool{"access.default.encryption_required": true}

func TestExampleFile(t *testing.T) {
	path := filepath.Join("..", "..", "palisade.example.toml")
	cfg, err := Load(path, fakeRegistry{})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Path = path
	want.SHA256 = cfg.SHA256 // the digest of the file's bytes (TestDefaults checks it)
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("example file differs from defaults:\n got  %+v\n want %+v", cfg, want)
	}

	// Every core key is present in the example file.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := indexDocument(data)
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := tomlName(f)
			if name == "-" {
				continue
			}
			key := strings.TrimPrefix(prefix+"."+name, ".")
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, key)
				continue
			}
			if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
				// Arrays of tables are documented commented out (their
				// default is none): each key appears in the example.
				if !strings.Contains(string(data), "# [["+key+"]]") {
					missing = append(missing, key)
				}
				continue
			}
			if _, ok := idx.lookup(key); !ok && !olderKeys[key] {
				missing = append(missing, key)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	if len(missing) > 0 {
		t.Errorf("keys missing from the example file: %v", missing)
	}

	// The commented-out sections of the modules this test knows are valid
	// once uncommented (other modules test their own sections).
	text := strings.ReplaceAll(string(data), "# [modules.register]", "[modules.register]")
	text = strings.ReplaceAll(text, "# [modules.version]", "[modules.version]")
	text = strings.ReplaceAll(text, "# allow = ", "allow = ")
	text = strings.ReplaceAll(text, "# hide = ", "hide = ")
	text = strings.ReplaceAll(text, "# staff = ", "staff = ") // the group the groups policy names
	// The commented retention policies and hold are valid too.
	var lines []string
	inArray := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "# [[archive."):
			inArray = true
		case !strings.HasPrefix(line, "#"):
			inArray = false
		}
		if inArray && strings.HasPrefix(line, "# ") {
			line = strings.TrimPrefix(line, "# ")
		}
		lines = append(lines, line)
	}
	text = strings.Join(lines, "\n")
	cfg, err = Parse(path, []byte(text), fakeRegistry{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Archive.Retention) != 3 || !cfg.Archive.Retention[0].Locked || cfg.Archive.Retention[1].JIDs[1] != "bob@example.com" ||
		cfg.Archive.Retention[2].Groups[0] != "staff" ||
		len(cfg.Archive.Holds) != 1 || cfg.Archive.Holds[0].To != "2026-06-30" {
		t.Errorf("example retention and holds = %+v %+v", cfg.Archive.Retention, cfg.Archive.Holds)
	}
	if len(cfg.Modules) != 2 || cfg.Modules["register"].Line == 0 || cfg.Modules["version"].Line == 0 {
		t.Errorf("modules = %+v", cfg.Modules)
	}
}

func TestSummary(t *testing.T) {
	doc := `
[server]
domains = ["example.org", "chat.example.org"]
[listen]
c2s_direct_tls = ""
websocket_plain = true
[tls]
cert_file = "/etc/palisade/cert.pem"
key_file = "/etc/palisade/key.pem"
[auth]
providers = ["internal"]
[modules.register]
allow = true
`
	cfg, err := Parse("palisade.toml", []byte(doc), testRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Summary()
	for _, want := range []string{
		"config file:      palisade.toml\n",
		"domains:          example.org, chat.example.org\n",
		"data dir:         ./data\n",
		"c2s (STARTTLS):   127.0.0.1:5222\n",
		"c2s (direct TLS): off\n",
		"websocket:        127.0.0.1:5280 (ws, plain, /xmpp-websocket)\n",
		"admin http:       127.0.0.1:5281 (/healthz)\n",
		"tls:              cert /etc/palisade/cert.pem, key /etc/palisade/key.pem\n",
		"auth providers:   internal\n",
		"modules:          register, version (defaults)\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	// The archive's witnesses are listed with their names.
	cfg, err = Parse("palisade.toml", []byte(doc+"[archive]\nenabled = true\n[[archive.witness]]\nurl = \"https://w.example/w\"\nkey = \""+witnessVkey+
		"\"\nrequired = false\n"), testRegistry())
	if err != nil {
		t.Fatal(err)
	}
	name, _, _ := strings.Cut(witnessVkey, "+")
	if want := "witness:          " + name + " at https://w.example/w (optional)\n"; !strings.Contains(cfg.Summary(), want) {
		t.Errorf("summary lacks %q:\n%s", want, cfg.Summary())
	}
	d := Default().Summary()
	for _, want := range []string{"wss, /xmpp-websocket", "tls:              no certificate configured", "modules:          none"} {
		if !strings.Contains(d, want) {
			t.Errorf("default summary lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, "config file") {
		t.Errorf("default summary names a file:\n%s", d)
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || time.Duration(d) != 90*time.Second {
		t.Fatalf("d = %v, err = %v", d, err)
	}
	b, err := d.MarshalText()
	if err != nil || string(b) != "1m30s" {
		t.Errorf("MarshalText = %q, %v", b, err)
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil {
		t.Error("no error for a bad duration")
	}
}

// FuzzParse checks that Parse never panics and that every error it reports
// names the file.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"", "[server]\ndomains = [\"a.example\"]\n", "limits = { send_queue = \"x\", bogus = 1 }\n",
		"[modules.register]\nallow = 1\ncooldown = 5\n", "[modules]\nversion = 3\n", "[[limits]]\n",
		"a = \"\"\"\nx\n\"\"\"\n[log]\nlevel = 1\nformat = 2\n", "[tls]\ncert_file = \"c\"\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := Parse("f.toml", []byte(doc), testRegistry())
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without error")
			}
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) || len(*errs) == 0 {
			t.Fatalf("error %T: %v", err, err)
		}
		for _, e := range *errs {
			if e.File != "f.toml" {
				t.Fatalf("error without file: %#v", e)
			}
		}
	})
}

// witnessVkey is a cosignature/v1 verifier key of a witness named
// w.example/w1.
const witnessVkey = "w.example/w1+234b32b0+BDtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
