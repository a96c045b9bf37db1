package config

import (
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// position is a 1-based line and byte column in the document.
type position struct{ line, col int }

// keyInfo is what the index knows about one dotted key of the document.
type keyInfo struct {
	pos  position
	kind unstable.Kind // kind of the value; Table for tables and key prefixes
}

// expression is one top-level TOML expression and the bytes it spans.
type expression struct {
	start, end int // byte offsets, end exclusive
	keyValue   bool
	path       []string // full key of the expression
}

// moduleRef is a [modules.NAME] section found in the document.
type moduleRef struct {
	name string
	pos  position
}

// docIndex maps the keys of a TOML document to their positions, using
// go-toml's unstable parser, so that errors found after decoding can point
// at a line.
type docIndex struct {
	lineStarts []int
	keys       map[string]keyInfo // lowercased dotted key → first occurrence
	exprs      []expression
	modules    []moduleRef // in order of first appearance
	seenMods   map[string]bool
	values     map[int]valueRef // byte offset of a scalar value → its key
	keysAt     map[int][]string // byte offset of a key → its full path
}

// valueRef is the key a value belongs to; elem is set for array elements.
type valueRef struct {
	path []string
	elem bool
}

// indexDocument parses data and indexes its keys. It returns the parser's
// syntax error, if any.
func indexDocument(data []byte) (*docIndex, error) {
	idx := &docIndex{
		lineStarts: []int{0},
		keys:       map[string]keyInfo{},
		seenMods:   map[string]bool{},
		values:     map[int]valueRef{},
		keysAt:     map[int][]string{},
	}
	for i, c := range data {
		if c == '\n' {
			idx.lineStarts = append(idx.lineStarts, i+1)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	// elemTable is "key[i]" inside the i-th [[key]] array table, so that
	// errors about one element's keys point at that element.
	elemTable := ""
	arrayTables := map[string]int{}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = nil
			elemTable = ""
			var first, last unstable.Range
			it := e.Key()
			for it.Next() {
				n := it.Node()
				if table == nil {
					first = n.Raw
				}
				last = n.Raw
				table = append(table, string(n.Data))
				idx.add(table, n.Raw, unstable.Table)
			}
			idx.keysAt[int(first.Offset)] = table
			if e.Kind == unstable.ArrayTable {
				name := strings.ToLower(strings.Join(table, "."))
				elemTable = elemKey(name, arrayTables[name])
				arrayTables[name]++
				idx.keys[elemTable] = keyInfo{pos: idx.position(int(first.Offset)), kind: unstable.Table}
			}
			idx.exprs = append(idx.exprs, expression{
				start: int(first.Offset),
				end:   int(last.Offset + last.Length),
				path:  table,
			})
		case unstable.KeyValue:
			path := idx.addKeyValue(table, e)
			if elemTable != "" {
				k := elemTable + "." + strings.ToLower(strings.Join(path[len(table):], "."))
				idx.keys[k] = keyInfo{pos: idx.position(int(e.Raw.Offset)), kind: e.Value().Kind}
			}
			idx.exprs = append(idx.exprs, expression{
				start:    int(e.Raw.Offset),
				end:      int(e.Raw.Offset + e.Raw.Length),
				keyValue: true,
				path:     path,
			})
		}
	}
	if err := p.Error(); err != nil {
		return idx, err
	}
	return idx, nil
}

// addKeyValue indexes a key-value under the table prefix and returns its
// full key.
func (idx *docIndex) addKeyValue(prefix []string, kv *unstable.Node) []string {
	path := append([]string(nil), prefix...)
	var start unstable.Range
	it := kv.Key()
	first := true
	for it.Next() {
		n := it.Node()
		if first {
			start = n.Raw
			first = false
		}
		path = append(path, string(n.Data))
		if !it.IsLast() {
			idx.add(path, n.Raw, unstable.Table)
		}
	}
	v := kv.Value()
	idx.keysAt[int(start.Offset)] = path
	idx.add(path, start, v.Kind)
	if v.Raw.Length > 0 {
		idx.values[int(v.Raw.Offset)] = valueRef{path: path}
	}
	idx.addValue(path, v)
	return path
}

// addValue indexes the contents of inline tables and the elements of arrays.
func (idx *docIndex) addValue(path []string, v *unstable.Node) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if n := it.Node(); n.Kind == unstable.KeyValue {
				idx.addKeyValue(path, n)
			}
		}
	case unstable.Array:
		i := 0
		it := v.Children()
		for it.Next() {
			n := it.Node()
			if n.Kind == unstable.Comment {
				continue
			}
			if n.Raw.Length > 0 {
				idx.values[int(n.Raw.Offset)] = valueRef{path: path, elem: true}
				key := elemKey(strings.Join(path, "."), i)
				if _, ok := idx.keys[strings.ToLower(key)]; !ok {
					idx.keys[strings.ToLower(key)] = keyInfo{pos: idx.position(int(n.Raw.Offset)), kind: n.Kind}
				}
			}
			i++
		}
	}
}

// add records the first occurrence of a key, and of module sections.
func (idx *docIndex) add(path []string, at unstable.Range, kind unstable.Kind) {
	pos := idx.position(int(at.Offset))
	key := strings.ToLower(strings.Join(path, "."))
	if _, ok := idx.keys[key]; !ok {
		idx.keys[key] = keyInfo{pos: pos, kind: kind}
	}
	if len(path) == 2 && strings.EqualFold(path[0], "modules") && !idx.seenMods[path[1]] {
		idx.seenMods[path[1]] = true
		idx.modules = append(idx.modules, moduleRef{name: path[1], pos: pos})
	}
}

// position converts a byte offset to a line and column.
func (idx *docIndex) position(off int) position {
	i := sort.Search(len(idx.lineStarts), func(i int) bool { return idx.lineStarts[i] > off }) - 1
	if i < 0 {
		i = 0
	}
	return position{line: i + 1, col: off - idx.lineStarts[i] + 1}
}

// offset converts a line and column back to a byte offset.
func (idx *docIndex) offset(line, col int) int {
	if line < 1 || line > len(idx.lineStarts) {
		return -1
	}
	if col < 1 {
		col = 1
	}
	return idx.lineStarts[line-1] + col - 1
}

// lookup returns the position of a dotted key.
func (idx *docIndex) lookup(key string) (keyInfo, bool) {
	if idx == nil {
		return keyInfo{}, false
	}
	ki, ok := idx.keys[strings.ToLower(key)]
	return ki, ok
}

// find returns the position for an error about key (or its element elem,
// when elem >= 0): the key's own position, else that of its nearest
// ancestor present in the document, else the zero position.
func (idx *docIndex) find(key string, elem int) position {
	if elem >= 0 {
		if ki, ok := idx.lookup(elemKey(key, elem)); ok {
			return ki.pos
		}
	}
	for k := key; k != ""; {
		if ki, ok := idx.lookup(k); ok {
			return ki.pos
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return position{}
}

// expressionAt returns the top-level expression spanning offset off.
func (idx *docIndex) expressionAt(off int) *expression {
	for i := range idx.exprs {
		e := &idx.exprs[i]
		if e.start <= off && off < e.end {
			return e
		}
	}
	return nil
}

func elemKey(key string, i int) string { return key + "[" + strconv.Itoa(i) + "]" }
