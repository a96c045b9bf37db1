package extdisco_test

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/modules/extdisco"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
)

// The [modules.extdisco] section of palisade.example.toml is valid once
// uncommented: its top keys show the defaults, its service table is a
// valid service.
func TestExampleSection(t *testing.T) {
	const path = "../../palisade.example.toml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var top, svc strings.Builder
	in, table := false, false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "# [modules.extdisco]"):
			in = true
		case in && strings.HasPrefix(line, "# [[modules.extdisco.services]]"):
			table = true
		case in && strings.HasPrefix(line, "# ") && strings.Contains(line, " = "):
			kv := strings.TrimPrefix(line, "# ")
			if table {
				svc.WriteString(kv + "\n")
			} else {
				top.WriteString(kv + "\n")
			}
		case in:
			in = false
		}
	}
	cfg, err := config.Parse(path, []byte("[modules.extdisco]\n"+top.String()), module.ConfigRegistry{})
	if err != nil {
		t.Fatalf("%v\n%s", err, top.String())
	}
	got := cfg.Modules["extdisco"].Value.(*extdisco.Config)
	if !reflect.DeepEqual(got, extdisco.DefaultConfig()) {
		t.Errorf("example values %+v differ from the defaults %+v", *got, *extdisco.DefaultConfig())
	}
	doc := "[modules.extdisco]\nsecret = \"x\"\n[[modules.extdisco.services]]\n" + svc.String()
	cfg, err = config.Parse(path, []byte(doc), module.ConfigRegistry{})
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	if s := cfg.Modules["extdisco"].Value.(*extdisco.Config).Services; len(s) != 1 || s[0].Host != "turn.example.org" || !s[0].Restricted {
		t.Errorf("example service: %+v", s)
	}
	// Strict: an unknown key in a service is refused with its position.
	_, err = config.Parse(path, []byte(doc+"colour = \"red\"\n"), module.ConfigRegistry{})
	if err == nil || !strings.Contains(err.Error(), "modules.extdisco.services") {
		t.Errorf("unknown key: %v", err)
	}
}
