package config

import (
	"errors"
	"time"
)

// Checker knows the probe kinds (probes.Kinds implements it).
type Checker interface {
	// CheckProbe reports whether p's kind is local (has no breaker) and validates its options. Errors
	// are FieldErrors relative to the probe (e.g. "url: …", "kind: …"). Warnings are run-time
	// conditions (a secret not set yet) that do not stop the agent.
	CheckProbe(p *Probe) (local bool, warnings []string, err error)
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
func Load(name string, data []byte, kinds Checker, lookupEnv func(string) (string, bool)) (*Loaded, error) {
	return nil, errors.New("not implemented")
}

// LoadFile reads path and calls Load.
func LoadFile(path string, kinds Checker, lookupEnv func(string) (string, bool)) (*Loaded, error) {
	return nil, errors.New("not implemented")
}
