package config

import (
	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// decodeConfig decodes raw (the output of the raw stage) into a Config with viper, and is the only
// place that knows viper's ways: it lower-cases every key it is given, in place; it reads a key with
// a dot as a path; its decoder is weakly typed ("true" makes a bool). Struct fields still match keys
// case-insensitively, and error paths come from the struct tags, so they keep the contract's spelling.
//
// raw is never changed. The subtrees hold names are left out of the decode and handed back as
// written, shaped like raw (held["egress"], held["probes"][2]["url"]); they are raw's own values, not
// copies. hold is asked about each key of each mapping, with the mapping's path ("" at the top,
// "server", "probes[]" for every probe): a held key's value is neither decoded nor looked into.
func decodeConfig(raw map[string]any, hold func(path, key string) bool) (cfg *Config, held map[string]any, err error) {
	rest, h := split(raw, "", hold)
	held, _ = h.(map[string]any)
	if held == nil {
		held = map[string]any{}
	}
	v := viper.New()
	if err := v.MergeConfigMap(rest.(map[string]any)); err != nil {
		return &Config{}, held, err
	}
	cfg = &Config{}
	err = v.Unmarshal(cfg,
		viper.DecodeHook(mapstructure.DecodeHookFuncType(durationHook)),
		func(dc *mapstructure.DecoderConfig) { dc.ErrorUnused = true })
	return cfg, held, err
}

// split copies v without the subtrees hold names, and returns those apart, shaped like v; held is nil
// when v holds none.
func split(v any, path string, hold func(path, key string) bool) (rest, held any) {
	switch x := v.(type) {
	case map[string]any:
		r, h := make(map[string]any, len(x)), map[string]any{}
		for k, e := range x {
			if hold(path, k) {
				h[k] = e
				continue
			}
			var he any
			r[k], he = split(e, joinPath(path, k), hold)
			if he != nil {
				h[k] = he
			}
		}
		if len(h) == 0 {
			return r, nil
		}
		return r, h
	case []any:
		r, h := make([]any, len(x)), make([]any, len(x))
		some := false
		for i, e := range x {
			r[i], h[i] = split(e, path+"[]", hold)
			some = some || h[i] != nil
		}
		if !some {
			return r, nil
		}
		return r, h
	default:
		return v, nil
	}
}
