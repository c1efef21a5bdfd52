package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// runMicro runs the repository's micro-benchmarks (pkg/monitor: building a snapshot; pkg/api: the
// handlers) with -benchmem and returns their result lines.
func runMicro(ctx context.Context, p *params) ([]string, error) {
	benchtime := "300ms"
	if p.quick {
		benchtime = "100ms"
	}
	args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", benchtime,
		"./pkg/monitor", "./pkg/api"}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = p.repo
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "pkg:") {
			lines = append(lines, l)
		}
	}
	lines = append([]string{"$ go " + strings.Join(args, " ")}, lines...)
	return lines, sc.Err()
}
