package probes

import "errors"

// newTCP is a placeholder until the tcp kind lands.
func newTCP(spec Spec) (Probe, error) { return nil, errors.New("kind tcp: not implemented yet") }
