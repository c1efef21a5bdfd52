//go:build !linux

package footprint

// Release does nothing but say so: only Linux has the interfaces it needs (/proc/self/smaps,
// MADV_COLD), and the agent's images are Linux ones.
func Release() (Report, error) { return Report{}, ErrUnsupported }
