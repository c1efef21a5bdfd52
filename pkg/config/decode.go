package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// decode decodes the raw config into a Config. Each probe's kind options are left out and handed to
// the probe as written: its kind validates them. So is the egress section: decodeEgress lays its
// defaults route by route and decodes it strictly. Decode errors at a path a probe inherited are left
// out: they are reported once, at `defaults`.
func (l *loader) decode(raw map[string]any, probe *schema, inherited []map[string]bool) *Config {
	cfg, held, err := decodeConfig(raw, func(path, key string) bool {
		return path == "" && key == "egress" || path == "probes[]" && !probe.known(key)
	})
	for _, e := range decodeLeaves(err) {
		fe := translateDecodeError(e)
		if isInherited(fe.Path, inherited) {
			continue
		}
		l.add(fe)
	}
	cfg.Egress = l.decodeEgress(held["egress"])
	options, _ := held["probes"].([]any)
	for i := range cfg.Probes {
		if i >= len(inherited) {
			break
		}
		cfg.Probes[i].Options = map[string]any{}
		if i < len(options) {
			if o, ok := options[i].(map[string]any); ok {
				cfg.Probes[i].Options = o
			}
		}
		cfg.Probes[i].inherited = inherited[i]
	}
	return cfg
}

var durationType = reflect.TypeFor[time.Duration]()

// durationHook decodes Go durations ("250ms", "10s", "5m"). A bare number other than 0 is an error
// rather than nanoseconds: `interval: 10` almost certainly did not mean 10ns.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType || from == durationType {
		return data, nil
	}
	switch from.Kind() {
	case reflect.String:
		s := data.(string)
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("must be a duration like 250ms, 10s or 5m, got %s", quoteShort(s))
		}
		return d, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		if reflect.ValueOf(data).IsZero() {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("must be a duration with a unit, like 10s, got %v", data)
	}
	return data, nil
}

// translateDecodeError turns a mapstructure error into a FieldError that names the bad value.
func translateDecodeError(e error) *FieldError {
	var de *mapstructure.DecodeError
	if errors.As(e, &de) {
		var pe *mapstructure.ParseError
		var ue *mapstructure.UnconvertibleTypeError
		switch {
		case errors.As(de.Unwrap(), &pe):
			return Errorf(de.Name(), "must be %s, got %s", typeWord(pe.Expected.Type()), describe(pe.Value))
		case errors.As(de.Unwrap(), &ue):
			return Errorf(de.Name(), "must be %s, got %s", typeWord(ue.Expected.Type()), describe(ue.Value))
		}
	}
	var fe *FieldError
	if errors.As(decodeError(e), &fe) {
		return fe
	}
	return &FieldError{Msg: e.Error()}
}

// typeWord names a type for people.
func typeWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if t == durationType {
			return "a duration like 10s"
		}
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "a mapping"
	default:
		return t.String()
	}
}

// isInherited reports whether path ("probes[3].retry.backoff") is a value the probe inherited.
func isInherited(path string, inherited []map[string]bool) bool {
	rest, ok := strings.CutPrefix(path, "probes[")
	if !ok {
		return false
	}
	idx, rest, ok := strings.Cut(rest, "].")
	if !ok {
		return false
	}
	i, err := strconv.Atoi(idx)
	if err != nil || i < 0 || i >= len(inherited) {
		return false
	}
	return inheritedKey(inherited[i], rest)
}

// inheritedKey reports whether key ("retry.backoff") or its parent ("retry") was inherited.
func inheritedKey(inherited map[string]bool, key string) bool {
	if inherited[key] {
		return true
	}
	parent, _, ok := strings.Cut(key, ".")
	return ok && inherited[parent]
}
