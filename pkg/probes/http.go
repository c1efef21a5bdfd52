package probes

import "errors"

// newHTTP is a placeholder until the http kind lands.
func newHTTP(spec Spec) (Probe, error) { return nil, errors.New("kind http: not implemented yet") }
