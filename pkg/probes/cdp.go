package probes

import "errors"

// newCDP is a placeholder until the cdp kind lands.
func newCDP(spec Spec) (Probe, error) { return nil, errors.New("kind cdp: not implemented yet") }
