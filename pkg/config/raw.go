package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// The raw stage works on the config as decoded from YAML (maps, lists, scalars), before it is decoded
// into Config: it checks keys against the schema and gives them their canonical spelling, lays the
// built-in defaults under the file's keys, turns a probe's `breaker:` into a name and a policy, and
// lets each probe inherit `defaults`. Doing this on maps rather than structs is what tells "the probe
// left it out" from "the probe set it to zero".

// schema is the set of keys a config mapping may hold, derived from the mapstructure tags.
type schema struct {
	fields map[string]*field // by lower-cased key: keys match case-insensitively
	names  []string          // canonical keys in declaration order, for messages
	open   bool              // unknown keys are kept (a probe's kind-specific options)
}

type field struct {
	name     string
	sub      *schema // the keys of a nested mapping, or of each element of a list
	list     bool    // a list of mappings
	nullable bool    // a pointer: null means "none" rather than "not set"
	// nameOrMap: the value may also be a string (a probe's `breaker: NAME`).
	nameOrMap bool
	// reserved: decoded from the raw map but never written by users (Probe.BreakerName).
	reserved bool
}

// configSchema returns the schema of a config file. A fresh value each call: no shared state.
func configSchema() *schema {
	s := schemaOf(reflect.TypeFor[Config]())
	probe := s.fields["probes"].sub
	probe.fields["breakername"].reserved = true
	probe.names = slices.DeleteFunc(probe.names, func(n string) bool { return n == "breakerName" })
	b := probe.fields["breaker"]
	b.nameOrMap = true
	b.sub.fields["name"] = &field{name: "name"}
	b.sub.names = append([]string{"name"}, b.sub.names...)
	return s
}

func schemaOf(t reflect.Type) *schema {
	s := &schema{fields: map[string]*field{}}
	s.add(t)
	return s
}

func (s *schema) add(t reflect.Type) {
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, opt, _ := strings.Cut(sf.Tag.Get("mapstructure"), ",")
		switch {
		case name == "-":
			continue
		case opt == "squash":
			s.add(sf.Type)
			continue
		case opt == "remain":
			s.open = true
			continue
		}
		f := &field{name: name}
		ft := sf.Type
		if ft.Kind() == reflect.Pointer {
			f.nullable = true
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			f.sub = schemaOf(ft)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			f.list = true
			f.sub = schemaOf(ft.Elem())
		}
		s.fields[strings.ToLower(name)] = f
		s.names = append(s.names, name)
	}
}

// known reports whether key (any case) is one of the schema's own keys.
func (s *schema) known(key string) bool {
	_, ok := s.fields[strings.ToLower(key)]
	return ok
}

// canon checks m's keys against s: it renames known keys to their canonical spelling, reports and drops
// unknown keys (unless s is open), and recurses into nested mappings and lists.
func (l *loader) canon(m map[string]any, s *schema, path string) {
	for _, k := range sortedKeys(m) {
		f := s.fields[strings.ToLower(k)]
		p := joinPath(path, k)
		if f == nil || f.reserved {
			if s.open && f == nil {
				continue // a kind-specific option: the kind checks it
			}
			l.fail(p, "unknown key (valid keys: %s)", strings.Join(s.names, ", "))
			delete(m, k)
			continue
		}
		if k != f.name {
			if _, dup := m[f.name]; dup {
				l.fail(p, "duplicate of key %q (keys are case-insensitive)", f.name)
				delete(m, k)
				continue
			}
			m[f.name] = m[k]
			delete(m, k)
		}
		l.value(m, f, joinPath(path, f.name))
	}
}

// value checks the shape of m[f.name] and recurses into it.
func (l *loader) value(m map[string]any, f *field, path string) {
	v := m[f.name]
	if v == nil {
		if !f.nullable {
			delete(m, f.name) // null means "not set": inherit or take the built-in default
		}
		return
	}
	switch {
	case f.list:
		list, ok := v.([]any)
		if !ok {
			l.fail(path, "must be a list, got %s", describe(v))
			delete(m, f.name)
			return
		}
		for i, e := range list {
			ep := fmt.Sprintf("%s[%d]", path, i)
			em, ok := e.(map[string]any)
			if !ok {
				l.fail(ep, "must be a mapping, got %s", describe(e))
				list[i] = map[string]any{} // keep the indexes of the others
				continue
			}
			l.canon(em, f.sub, ep)
		}
	case f.sub != nil:
		if _, ok := v.(string); ok && f.nameOrMap {
			return
		}
		mm, ok := v.(map[string]any)
		if !ok {
			if f.nameOrMap {
				l.fail(path, "must be a breaker name or a mapping, got %s", describe(v))
			} else {
				l.fail(path, "must be a mapping, got %s", describe(v))
			}
			delete(m, f.name)
			return
		}
		l.canon(mm, f.sub, path)
	}
}

// splitBreaker turns a probe's `breaker: NAME` or `breaker: {name: NAME, …}` into breakerName and a
// breaker policy (which then inherits the default policy key by key).
func (l *loader) splitBreaker(probe map[string]any, path string) {
	switch b := probe["breaker"].(type) {
	case string:
		probe["breakerName"] = b
		delete(probe, "breaker")
	case map[string]any:
		n, ok := b["name"]
		if !ok {
			return
		}
		delete(b, "name")
		switch s := n.(type) {
		case string:
			probe["breakerName"] = s
		case nil:
		default:
			l.fail(path+".breaker.name", "must be a string, got %s", describe(n))
		}
	}
}

// mergeUnder sets every key of base that dst lacks, merging nested mappings key by key. base's values
// are laid as they are, not copied: nothing changes a laid value afterwards.
func mergeUnder(dst, base map[string]any) {
	for k, bv := range base {
		dv, ok := dst[k]
		if !ok {
			dst[k] = bv
			continue
		}
		dm, ok1 := dv.(map[string]any)
		bm, ok2 := bv.(map[string]any)
		if ok1 && ok2 {
			mergeUnder(dm, bm)
		}
	}
}

// inherit gives probe every key of defaults it does not set, merging retry, breaker and rateLimit key
// by key. It returns the keys the probe inherited ("interval", "retry.backoff", or "retry" when the
// probe had no retry at all). Like mergeUnder, it shares the values of defaults rather than copying them.
func inherit(probe, defaults map[string]any) map[string]bool {
	inherited := map[string]bool{}
	for k, dv := range defaults {
		pv, ok := probe[k]
		if !ok {
			probe[k] = dv
			inherited[k] = true
			continue
		}
		pm, ok1 := pv.(map[string]any)
		dm, ok2 := dv.(map[string]any)
		if !ok1 || !ok2 {
			continue
		}
		for sk, sv := range dm {
			if _, ok := pm[sk]; !ok {
				pm[sk] = sv
				inherited[k+"."+sk] = true
			}
		}
	}
	return inherited
}

// normalize makes every mapping a map[string]any: YAML allows non-string keys (`1: x`), which are
// spelled as strings here.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	default:
		return v
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// describe shows a raw value in a message: scalars as written, structures by their shape.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return quoteShort(x)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(x)
	default:
		s := fmt.Sprint(x)
		if len(s) > 80 {
			s = s[:80] + "…"
		}
		return s
	}
}
