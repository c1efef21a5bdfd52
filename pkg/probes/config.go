package probes

import "errors"

// newConfig is a placeholder until the config kind lands.
func newConfig(spec Spec) (Probe, error) { return nil, errors.New("kind config: not implemented yet") }
