package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0123456789abcdef0123"}
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"a work tree build with a revision", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{rev}}, "dev+0123456789ab"},
		{"a module version", debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{"a module version and a revision", debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{rev}}, "v1.4.0+0123456789ab"},
		{"nothing recorded", debug.BuildInfo{}, "dev"},
		{"a short revision is not shown", debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}}}, "dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fromBuildInfo(&tt.bi); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStringPrefersTheLinkerValue(t *testing.T) {
	old := value
	t.Cleanup(func() { value = old })
	value = "v9.9.9"
	if got := String(); got != "v9.9.9" {
		t.Errorf("String() = %q with -ldflags value v9.9.9", got)
	}
	value = ""
	if String() == "" {
		t.Error("String() is empty without an -ldflags value")
	}
}
