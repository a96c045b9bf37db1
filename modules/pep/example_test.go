package pep_test

import (
	"os"
	"strings"
	"testing"

	"github.com/palisade-im/palisade/modules/pep"
	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/server/module"
)

// The [modules.pep] section of palisade.example.toml is valid once
// uncommented and shows the defaults.
func TestExampleSection(t *testing.T) {
	const path = "../../palisade.example.toml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "# [modules.pep]"):
			in = true
			b.WriteString("[modules.pep]\n")
		case in && strings.HasPrefix(line, "# ") && strings.Contains(line, " = "):
			b.WriteString(strings.TrimPrefix(line, "# ") + "\n")
		case in:
			in = false
		}
	}
	cfg, err := config.Parse(path, []byte(b.String()), module.ConfigRegistry{})
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	got, ok := cfg.Modules["pep"].Value.(*pep.Config)
	if !ok {
		t.Fatalf("no pep section in:\n%s", b.String())
	}
	if *got != *pep.DefaultConfig() {
		t.Errorf("example values %+v differ from the defaults %+v", *got, *pep.DefaultConfig())
	}
}
