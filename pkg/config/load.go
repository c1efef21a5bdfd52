package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ProbeKinds knows the probe kinds: which exist, which are local, and how each validates its options
// (probes.Registry implements it).
type ProbeKinds interface {
	// CheckProbe reports whether p's kind is local (has no breaker) and validates its options. Errors
	// are FieldErrors relative to the probe (e.g. "url: …", "kind: …"). Warnings are run-time
	// conditions (a secret not set yet) that do not stop the agent.
	CheckProbe(p *Probe) (local bool, warnings []string, err error)
}

// TargetLister is optionally implemented by a ProbeKinds (probes.Registry does): where a probe connects.
// Validation uses it to refuse a critical probe aimed at the agent's own health endpoints.
type TargetLister interface {
	// ProbeTargets lists the addresses p's probe connects to; nothing for a kind that connects
	// nowhere or options that do not validate.
	ProbeTargets(p *Probe) []Target
}

// Target is one network address a probe connects to.
type Target struct {
	Option  string // the option that names it, relative to the probe ("url", "urls[1]", "address")
	Address string // host:port
}

// Loaded is a validated config and where it came from.
type Loaded struct {
	Config   *Config
	Source   string // the file path, or configs.DefaultName
	SHA256   string // hex sha256 of the file's bytes as read
	LoadedAt time.Time
	Warnings []string // each prefixed by its field path
}

// Load expands, decodes, defaults and validates a config. name is where data came from (for messages).
// A config that does not validate gives an error wrapping ErrInvalid that joins every problem, each a
// FieldError naming its path. lookupEnv nil means os.LookupEnv.
//
// The steps, in order: parse the YAML; expand ${VAR} references in scalar values (never in keys, and
// an expanded value is never parsed as YAML); check every key against the schema; lay the built-in
// defaults under the file's keys; let each probe inherit `defaults`; decode into a Config; validate.
func Load(name string, data []byte, kinds ProbeKinds, lookupEnv func(string) (string, bool)) (*Loaded, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	sum := sha256.Sum256(data)
	loadedAt := time.Now()

	l := &loader{}
	doc, err := parseYAML(data)
	if err != nil {
		return nil, &invalidError{errs: []error{&FieldError{Msg: err.Error()}}}
	}
	exp := newExpander(lookupEnv)
	var raw map[string]any
	if doc != nil {
		exp.node(doc, "")
		for _, e := range exp.errs {
			l.add(e)
		}
		raw = l.decodeYAML(doc)
	}
	if raw == nil {
		if len(l.errs) > 0 {
			// The document did not decode into a mapping: anything said about its parts would be noise.
			return nil, &invalidError{errs: l.errs}
		}
		raw = map[string]any{}
	}
	cfg := l.build(raw)

	warnings := exp.warnings
	vw, verr := cfg.Validate(kinds)
	warnings = append(warnings, vw...)
	warnings = append(warnings, cfg.egressSecretWarnings(lookupEnv)...)
	for _, e := range Flatten(verr) {
		if !l.isBad(pathOf(e)) {
			l.errs = append(l.errs, e)
		}
	}
	if len(l.errs) > 0 {
		return nil, newInvalid(l.errs)
	}
	if cfg.Server.DetailsToken != "" && !exp.templated["server.detailsToken"] {
		warnings = append(warnings, "server.detailsToken: written in the file; reference a secret instead, e.g. \"${HEALTH_AGENT_DETAILS_TOKEN}\"")
	}
	return &Loaded{Config: cfg, Source: name, SHA256: hex.EncodeToString(sum[:]), LoadedAt: loadedAt, Warnings: warnings}, nil
}

// LoadFile reads path (a regular file of at most MaxConfigBytes) and calls Load.
func LoadFile(path string, kinds ProbeKinds, lookupEnv func(string) (string, bool)) (*Loaded, error) {
	data, err := ReadFile(path, MaxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Load(path, data, kinds, lookupEnv)
}

// loader collects the problems of one Load.
type loader struct {
	errs []error
	// bad holds the paths that already have an error: a later error at or under one of them is a
	// consequence (a value that failed to decode is zero), not news.
	bad []string
}

func (l *loader) fail(path, format string, args ...any) {
	l.add(Errorf(path, format, args...))
}

func (l *loader) add(err error) {
	l.errs = append(l.errs, err)
	l.bad = append(l.bad, pathOf(err))
}

func (l *loader) isBad(path string) bool {
	for _, b := range l.bad {
		if path == b || b != "" && (strings.HasPrefix(path, b+".") || strings.HasPrefix(path, b+"[")) {
			return true
		}
	}
	return false
}

// pathOf returns the path of a FieldError, or "".
func pathOf(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Path
	}
	return ""
}

// parseYAML parses the one YAML document in data; nil for an empty file.
func parseYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return &doc, nil
	case err != nil:
		return nil, err
	default:
		return nil, errors.New("yaml: the file holds more than one document; a config is one document")
	}
}

// decodeYAML turns the expanded document into maps, lists and scalars.
func (l *loader) decodeYAML(doc *yaml.Node) map[string]any {
	var v any
	if err := doc.Decode(&v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				l.fail("", "yaml: %s", m)
			}
		} else {
			l.fail("", "%v", err)
		}
		return nil
	}
	v = normalize(v)
	switch m := v.(type) {
	case nil:
		return nil
	case map[string]any:
		return m
	default:
		l.fail("", "a config must be a mapping of server, scheduler, defaults and probes, got %s", describe(v))
		return nil
	}
}

// build runs the raw stage and decodes the result into a Config.
func (l *loader) build(raw map[string]any) *Config {
	s := configSchema()
	l.canon(raw, s, "")
	probes, _ := raw["probes"].([]any)
	for i, p := range probes {
		l.splitBreaker(p.(map[string]any), fmt.Sprintf("probes[%d]", i))
	}
	mergeUnder(raw, builtinDefaults())
	defaults, _ := raw["defaults"].(map[string]any)
	inherited := make([]map[string]bool, len(probes))
	for i, p := range probes {
		inherited[i] = inherit(p.(map[string]any), defaults)
	}
	return l.decode(raw, s.fields["probes"].sub, inherited)
}
