// Command agent is health-agent: a sidecar that probes the legacy app's dependencies and serves their
// aggregated health. See README.md.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv))
}
