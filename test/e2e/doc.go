// Package e2e holds the end-to-end test of the local demo: real headless Chromium, the demo's
// stand-ins (examples/demo/standin) and the agent built from ./cmd/agent, run as a real process.
// Run it with `go test ./test/e2e` (needs /usr/bin/chromium; skipped without it, except in CI).
package e2e
