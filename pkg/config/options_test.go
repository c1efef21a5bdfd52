package config

import (
	"slices"
	"testing"
	"time"
)

func TestDecodeOptionsReportsEveryError(t *testing.T) {
	var out struct {
		URL     string        `mapstructure:"url"`
		Timeout time.Duration `mapstructure:"timeout"`
		Count   int           `mapstructure:"count"`
	}
	err := DecodeOptions(map[string]any{"url": "x", "timeout": "soon", "count": "many"}, &out)
	var paths []string
	for _, e := range Flatten(err) {
		paths = append(paths, pathOf(e))
	}
	slices.Sort(paths)
	if want := []string{"count", "timeout"}; !slices.Equal(paths, want) {
		t.Errorf("error paths = %q, want %q (err %v)", paths, want, err)
	}
}
