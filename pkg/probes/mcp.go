package probes

import "errors"

// newMCP is a placeholder until the mcp kind lands.
func newMCP(spec Spec) (Probe, error) { return nil, errors.New("kind mcp: not implemented yet") }
