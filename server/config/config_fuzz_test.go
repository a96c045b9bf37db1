package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzConfig runs Parse, with the fake module registry of the other tests,
// on arbitrary documents. It must not panic, and:
//   - a document it accepts gives a configuration that validates again and
//     is the same when parsed twice;
//   - a document it refuses gives a non-empty *Errors, sorted, each naming
//     the file, with a message, and a position that lies inside the document
//     (line 1.. and a column on that line, or 0 when unknown) or none at
//     all; syntax errors always have both (file:line:col).
func FuzzConfig(f *testing.F) {
	if b, err := os.ReadFile("../../palisade.example.toml"); err == nil {
		f.Add(string(b))
	}
	f.Add("[server]\ndomains = [\"example.org\"]\nadmins = [\"admin@example.org\"]\n")
	f.Add("[server]\ndomains = [\"a\"]\ndomains = [\"b\"]\n")

	const name = "fuzz.toml"
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := Parse(name, []byte(doc), testRegistry())
		if err == nil {
			if cfg == nil {
				t.Fatal("nil config without error")
			}
			if cfg.Path != name {
				t.Fatalf("Path = %q", cfg.Path)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("accepted configuration does not validate again: %v", err)
			}
			again, err := Parse(name, []byte(doc), testRegistry())
			if err != nil || !reflect.DeepEqual(cfg, again) {
				t.Fatalf("second parse differs: %v\n%+v\n%+v", err, cfg, again)
			}
			return
		}
		if cfg != nil {
			t.Fatal("configuration returned with an error")
		}
		var errs *Errors
		if !errors.As(err, &errs) || len(*errs) == 0 {
			t.Fatalf("error %T is not a non-empty *Errors: %v", err, err)
		}
		lines := strings.Split(doc, "\n")
		prevLine, prevCol := 0, 0
		for _, e := range *errs {
			if e.File != name || strings.TrimSpace(e.Msg) == "" {
				t.Fatalf("error without file or message: %#v", e)
			}
			if !strings.HasPrefix(e.Error(), name+":") {
				t.Fatalf("error does not start with the file name: %q", e.Error())
			}
			switch {
			case e.Line == 0 && e.Col != 0:
				t.Fatalf("column without line: %#v", e)
			case e.Line < 0 || e.Line > len(lines):
				t.Fatalf("line %d outside a document of %d lines: %#v", e.Line, len(lines), e)
			case e.Line > 0 && (e.Col < 0 || e.Col > len(lines[e.Line-1])+1):
				t.Fatalf("column %d outside line %d (%d bytes): %#v", e.Col, e.Line, len(lines[e.Line-1]), e)
			case strings.HasPrefix(e.Msg, "invalid TOML") && (e.Line == 0 || e.Col == 0):
				t.Fatalf("syntax error without position: %#v", e)
			case e.Line < prevLine || e.Line == prevLine && e.Col < prevCol:
				t.Fatalf("errors not sorted: %v", err)
			}
			prevLine, prevCol = e.Line, e.Col
		}
		if _, err2 := Parse(name, []byte(doc), testRegistry()); err2 == nil || err2.Error() != err.Error() {
			t.Fatalf("second parse differs:\n%v\n%v", err, err2)
		}
	})
}
