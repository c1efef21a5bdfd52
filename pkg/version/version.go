// Package version is the agent's one version string, shown by `agent version`, in /api/health's
// data.version, in the build-info metric and to MCP servers.
package version

import "runtime/debug"

// value is set at build time with -ldflags "-X github.com/health-agent/health-agent/pkg/version.value=v1.2.3".
var value = ""

// String returns the version: the -ldflags value when the build set one, else the module version from
// the build info ("dev" for a build from a work tree) with "+" and the first 12 digits of the VCS
// revision when Go recorded one, else "dev".
func String() string {
	if value != "" {
		return value
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "(devel)" || v == "" {
		v = "dev"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return v + "+" + s.Value[:12]
		}
	}
	return v
}
