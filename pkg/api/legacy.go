package api

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/health-agent/health-agent/pkg/probes"
)

// The seed's dashboard reads services.memory.heapUsed, which the app itself reported as its V8 heap
// ("21MB"). The memory probe sees the process from outside (its RSS); when the app's own health body
// has the figure, the memory probe's member shows the app's, as the seed did (heapSource "app").

// appHeapUsed finds the app's own heapUsed in its legacy health JSON (data.legacy): a string such as "21MB" is
// kept as is, a number of bytes is formatted the same way.
func appHeapUsed(body json.RawMessage) (string, bool) {
	if len(body) == 0 {
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return "", false
	}
	for _, keys := range [][]string{{"memory", "heapUsed"}, {"data", "memory", "heapUsed"}, {"heapUsed"}} {
		v := doc
		for _, k := range keys {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[k]
		}
		switch v := v.(type) {
		case json.Number:
			if f, err := v.Float64(); err == nil && f >= 0 && f < math.MaxInt64 {
				return probes.LegacyMB(int64(f)), true
			}
		case string:
			s := strings.TrimSpace(v)
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
				return probes.LegacyMB(n), true
			}
			if s != "" && len(s) <= 32 {
				return s, true
			}
		}
	}
	return "", false
}
