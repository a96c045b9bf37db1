package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Load reads the configuration file at path; see Parse. An error reading the
// file is returned as is (a *fs.PathError naming the file); problems in its
// contents are returned together as a *Errors.
func Load(path string, modules Registry) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, modules)
}

// Parse decodes a configuration document; name is used as Config.Path and in
// error messages. Keys the document leaves out keep their defaults (see
// Default; a module's defaults are those of the struct its Registry entry
// returns). Decoding is strict and the result is validated; every problem
// found is returned together as a *Errors, with a nil *Config. modules may
// be nil, in which case every [modules.NAME] section is an error.
func Parse(name string, data []byte, modules Registry) (*Config, error) {
	l := &loader{file: name, reg: modules, unknownMods: map[string]bool{}}
	cfg := l.parse(data)
	if len(l.errs) > 0 {
		sortErrors(l.errs)
		errs := l.errs
		return nil, &errs
	}
	sum := sha256.Sum256(data)
	cfg.SHA256 = hex.EncodeToString(sum[:])
	return cfg, nil
}

// Validate checks a configuration built in code (for example from Default).
// The errors it returns carry no positions.
func (c *Config) Validate() error {
	l := &loader{file: c.Path}
	l.validate(c)
	if len(l.errs) > 0 {
		sortErrors(l.errs)
		errs := l.errs
		return &errs
	}
	return nil
}

// loader holds the state of one Parse call.
type loader struct {
	file string
	reg  Registry
	idx  *docIndex
	errs Errors
	// keys whose value could not be decoded; validation errors on them are
	// dropped, as they would only repeat the problem.
	bad map[string]bool
	// module sections already reported as unknown
	unknownMods map[string]bool
}

// markBad records that key's value could not be decoded.
func (l *loader) markBad(key string) {
	if l.bad == nil {
		l.bad = map[string]bool{}
	}
	l.bad[strings.ToLower(key)] = true
}

// moduleSlot is a module section present in the document.
type moduleSlot struct {
	ref   moduleRef
	ptr   reflect.Value // registry's pointer; invalid for unknown modules
	field int           // index in the modules struct
}

var (
	durationType = reflect.TypeOf(Duration(0))
	anyType      = reflect.TypeOf((*any)(nil)).Elem()
)

// maxDecodeErrors bounds how many decode errors are collected from one
// document before giving up.
const maxDecodeErrors = 50

func (l *loader) addErr(pos position, key, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: l.file, Line: pos.line, Col: pos.col, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// invalid reports a validation error about key (element elem of it when
// elem >= 0), unless key already has an error.
func (l *loader) invalid(key string, elem int, format string, args ...any) {
	if l.bad[strings.ToLower(key)] {
		return
	}
	var pos position
	if l.idx != nil {
		pos = l.idx.find(key, elem)
	}
	l.addErr(pos, key, format, args...)
}

func (l *loader) parse(data []byte) *Config {
	idx, err := indexDocument(data)
	l.idx = idx
	if err != nil {
		l.syntaxError(data, err)
		return nil
	}

	// One struct field per module section present in the document: the
	// module's own type when registered, any (to swallow it) otherwise.
	var slots []moduleSlot
	var modFields []reflect.StructField
	for i, ref := range idx.modules {
		slot := moduleSlot{ref: ref, field: i}
		typ := anyType
		if cfg, ok := l.moduleConfig(ref.name); !ok {
			l.addErr(ref.pos, "modules."+ref.name, "unknown module")
			l.unknownMods[ref.name] = true
		} else if rv := reflect.ValueOf(cfg); rv.Kind() != reflect.Pointer || rv.IsNil() {
			l.addErr(ref.pos, "modules."+ref.name, "module registry returned %T, not a non-nil pointer", cfg)
			l.unknownMods[ref.name] = true
		} else {
			slot.ptr = rv
			typ = rv.Elem().Type()
		}
		slots = append(slots, slot)
		modFields = append(modFields, reflect.StructField{
			Name: "M" + strconv.Itoa(i),
			Type: typ,
			Tag:  reflect.StructTag(`toml:` + strconv.Quote(ref.name)),
		})
	}

	// The decoding target: Config's sections plus the modules struct.
	def := reflect.ValueOf(Default()).Elem()
	cfgType := def.Type()
	var fields []reflect.StructField
	var sections []int // Config field index of each wrapper field
	for i := 0; i < cfgType.NumField(); i++ {
		f := cfgType.Field(i)
		if f.Tag.Get("toml") == "-" {
			continue
		}
		fields = append(fields, reflect.StructField{Name: f.Name, Type: f.Type, Tag: f.Tag})
		sections = append(sections, i)
	}
	modIdx := len(fields)
	fields = append(fields, reflect.StructField{
		Name: "Modules",
		Type: reflect.StructOf(modFields),
		Tag:  `toml:"modules"`,
	})
	wrapType := reflect.StructOf(fields)

	newTarget := func() reflect.Value {
		w := reflect.New(wrapType)
		for wi, ci := range sections {
			w.Elem().Field(wi).Set(def.Field(ci))
		}
		mods := w.Elem().Field(modIdx)
		for _, s := range slots {
			if s.ptr.IsValid() {
				mods.Field(s.field).Set(s.ptr.Elem())
			}
		}
		return w
	}

	w, ok := l.decode(data, wrapType, newTarget)
	if !ok {
		return nil
	}

	cfg := &Config{Path: l.file, Modules: map[string]Section{}}
	out := reflect.ValueOf(cfg).Elem()
	for wi, ci := range sections {
		out.Field(ci).Set(w.Elem().Field(wi))
	}
	mods := w.Elem().Field(modIdx)
	for _, s := range slots {
		if !s.ptr.IsValid() {
			continue
		}
		s.ptr.Elem().Set(mods.Field(s.field))
		cfg.Modules[s.ref.name] = Section{Name: s.ref.name, Value: s.ptr.Interface(), Line: s.ref.pos.line}
	}
	if lister, ok := l.reg.(ModuleLister); ok {
		for _, name := range lister.ModuleNames() {
			if _, done := cfg.Modules[name]; done || idx.seenMods[name] {
				continue
			}
			if v, ok := l.moduleConfig(name); ok {
				cfg.Modules[name] = Section{Name: name, Value: v}
			}
		}
	}

	l.checkDurationKinds(wrapType, "")
	l.validate(cfg)
	return cfg
}

func (l *loader) moduleConfig(name string) (any, bool) {
	if l.reg == nil {
		return nil, false
	}
	return l.reg.ModuleConfig(name)
}

// syntaxError reports the parser's error.
func (l *loader) syntaxError(data []byte, err error) {
	var perr *unstable.ParserError
	if !errors.As(err, &perr) {
		l.addErr(position{}, "", "%v", err)
		return
	}
	off := cap(data) - cap(perr.Highlight)
	if off < 0 || off > len(data) {
		off = len(data)
	}
	l.addErr(l.idx.position(off), strings.Join(perr.Key, "."), "invalid TOML: %s", perr.Message)
}

// decode decodes data strictly into a new target. When go-toml stops at an
// error in a key-value expression, the error is recorded, the expression is
// blanked out (keeping line numbers) and decoding starts again, so that all
// the problems of a document are reported at once. It returns the target
// and whether it was decoded completely (apart from the blanked
// expressions and unknown keys).
func (l *loader) decode(data []byte, wrapType reflect.Type, newTarget func() reflect.Value) (reflect.Value, bool) {
	doc := data
	copied := false
	for range maxDecodeErrors {
		w := newTarget()
		// The unmarshaler interface decodes the values of more than one
		// TOML type (access federate: a boolean or an array; federate.go).
		err := toml.NewDecoder(bytes.NewReader(doc)).DisallowUnknownFields().EnableUnmarshalerInterface().Decode(w.Interface())
		if err == nil {
			return w, true
		}
		var strictErr *toml.StrictMissingError
		if errors.As(err, &strictErr) {
			for i := range strictErr.Errors {
				de := &strictErr.Errors[i]
				line, col := de.Position()
				key := de.Key()
				if p, ok := l.idx.keysAt[l.idx.offset(line, col)]; ok && len(p) >= len(key) {
					key = p // go-toml leaves out the prefix inside inline tables
				}
				if len(key) >= 2 && strings.EqualFold(key[0], "modules") && l.unknownMods[key[1]] {
					continue // already reported as an unknown module
				}
				l.addErr(position{line, col}, strings.Join(key, "."), "unknown key")
			}
			return w, true
		}
		var de *toml.DecodeError
		if !errors.As(err, &de) {
			l.addErr(position{}, "", "%v", err)
			return w, false
		}
		line, col := de.Position()
		off := l.idx.offset(line, col)
		key := de.Key()
		expr := l.idx.expressionAt(off)
		if expr != nil && len(expr.path) > len(key) {
			key = expr.path
		}
		val, isValue := l.idx.values[off]
		if isValue {
			key = val.path
		}
		name := strings.Join(key, ".")
		if expr != nil && expr.elemPath != nil {
			name = strings.Join(expr.elemPath, ".")
		}
		l.markBad(name)
		l.addErr(position{line, col}, name, "%s", decodeMessage(de, key, val.elem, wrapType))
		if expr == nil || !expr.keyValue {
			return w, false
		}
		if !copied {
			doc = bytes.Clone(data)
			copied = true
		}
		for i := expr.start; i < expr.end; i++ {
			if doc[i] != '\n' && doc[i] != '\r' {
				doc[i] = ' '
			}
		}
		expr.keyValue = false // never blank the same expression twice
	}
	l.addErr(position{}, "", "too many errors, giving up")
	return reflect.Value{}, false
}

// decodeMessage turns go-toml's message into one about the configuration.
// elem tells that the value is an element of an array.
func decodeMessage(de *toml.DecodeError, key []string, elem bool, wrapType reflect.Type) string {
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	rest, ok := strings.CutPrefix(msg, "cannot decode TOML ")
	if !ok {
		return msg
	}
	got, _, ok := strings.Cut(rest, " into ")
	if !ok {
		return msg
	}
	target := fieldType(wrapType, key)
	if target == nil {
		return msg
	}
	for target.Kind() == reflect.Pointer {
		target = target.Elem()
	}
	if elem && (target.Kind() == reflect.Slice || target.Kind() == reflect.Array) {
		return fmt.Sprintf("expected %s in the array, got %s", typeName(target.Elem()), got)
	}
	return fmt.Sprintf("expected %s, got %s", typeName(target), got)
}

// fieldType follows a TOML key through struct fields (by toml tag, falling
// back to a case-insensitive field name, as go-toml does) and maps.
func fieldType(t reflect.Type, key []string) reflect.Type {
	for _, part := range key {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			f, ok := structField(t, part)
			if !ok {
				return nil
			}
			t = f.Type
		default:
			return nil
		}
	}
	return t
}

// structField finds the field a TOML key decodes into.
func structField(t reflect.Type, name string) (reflect.StructField, bool) {
	var fold reflect.StructField
	found := false
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		n := tomlName(f)
		if n == "-" {
			continue
		}
		if f.Anonymous && f.Tag.Get("toml") == "" && f.Type.Kind() == reflect.Struct {
			if ef, ok := structField(f.Type, name); ok {
				return ef, true
			}
			continue
		}
		if n == name {
			return f, true
		}
		if !found && strings.EqualFold(n, name) {
			fold, found = f, true
		}
	}
	return fold, found
}

// tomlName is the key name of a struct field.
func tomlName(f reflect.StructField) string {
	n, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if n == "" {
		n = f.Name
	}
	return n
}

// typeName describes a Go type in TOML terms.
func typeName(t reflect.Type) string {
	if t == durationType {
		return `a duration string such as "30s"`
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "a table"
	default:
		return "a value of type " + t.String()
	}
}

// checkDurationKinds reports Duration keys written as something other than a
// string: go-toml would store an integer as nanoseconds.
func (l *loader) checkDurationKinds(t reflect.Type, path string) {
	l.walkDurations(t, path, 0)
}

func (l *loader) walkDurations(t reflect.Type, path string, depth int) {
	if depth > 16 {
		return
	}
	check := func(key string) bool {
		ki, ok := l.idx.lookup(key)
		if ok && ki.kind != unstable.String && !l.bad[strings.ToLower(path)] {
			l.markBad(path)
			l.addErr(ki.pos, path, `expected a duration string such as "30s", got %s`, kindName(ki.kind))
		}
		return ok
	}
	switch {
	case t == durationType:
		check(path)
	case t.Kind() == reflect.Pointer:
		l.walkDurations(t.Elem(), path, depth+1)
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		if t.Elem() == durationType {
			for i := 0; check(elemKey(path, i)); i++ {
				if l.bad[strings.ToLower(path)] {
					break
				}
			}
		}
	case t.Kind() == reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			n := tomlName(f)
			if !f.IsExported() || n == "-" {
				continue
			}
			if f.Anonymous && f.Tag.Get("toml") == "" && f.Type.Kind() == reflect.Struct {
				l.walkDurations(f.Type, path, depth+1)
				continue
			}
			p := n
			if path != "" {
				p = path + "." + n
			}
			l.walkDurations(f.Type, p, depth+1)
		}
	}
}

// kindName names a TOML value kind.
func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "string"
	case unstable.Integer:
		return "integer"
	case unstable.Float:
		return "float"
	case unstable.Bool:
		return "boolean"
	case unstable.Array:
		return "array"
	case unstable.InlineTable, unstable.Table:
		return "table"
	default:
		return strings.ToLower(k.String())
	}
}
