package probes

import "errors"

// newMemory is a placeholder until the memory kind lands.
func newMemory(spec Spec) (Probe, error) { return nil, errors.New("kind memory: not implemented yet") }
