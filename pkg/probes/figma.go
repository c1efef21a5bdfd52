package probes

import "errors"

// newFigma is a placeholder until the figma kind lands.
func newFigma(spec Spec) (Probe, error) { return nil, errors.New("kind figma: not implemented yet") }
