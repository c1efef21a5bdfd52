package k8s_test

import (
	"bufio"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestImage checks the Dockerfile without a container engine: the build stage's COPY lines, cut down
// by .dockerignore, hold everything `go build` needs (a new top-level package directory missing from
// them would break the image build), and the runtime stage is static, non-root, with a HEALTHCHECK.
func TestImage(t *testing.T) {
	root := filepath.Join("..", "..")
	lines := dockerfile(t, filepath.Join(root, "Dockerfile"))
	ignore := readLines(t, filepath.Join(root, ".dockerignore"))

	var sources []string
	var final []string // the runtime stage's instructions
	for _, l := range lines {
		f := strings.Fields(l)
		switch {
		case f[0] == "FROM":
			final = nil
		case f[0] == "COPY" && !strings.HasPrefix(f[1], "--from"):
			sources = append(sources, f[1:len(f)-1]...)
		}
		final = append(final, l)
	}

	t.Run("the build context holds what go build needs", func(t *testing.T) {
		if !slices.Contains(ignore, "*") || !slices.Contains(ignore, "**/*_test.go") {
			t.Fatalf(".dockerignore %q: want an allowlist (*) that also drops tests", ignore)
		}
		ctx := t.TempDir()
		for _, src := range sources {
			if !slices.Contains(ignore, "!"+src) && !slices.Contains(ignore, "!"+src+"/") {
				t.Errorf("COPY %s, but .dockerignore does not allow it", src)
			}
			copyTree(t, filepath.Join(root, src), filepath.Join(ctx, src))
		}
		bin := filepath.Join(t.TempDir(), "agent")
		build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=image-test", "-o", bin, "./cmd/agent")
		build.Dir = ctx
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build in the image's context (%v): %v\n%s", sources, err, out)
		}
		out, err := exec.Command(bin, "version").Output()
		if err != nil || strings.TrimSpace(string(out)) != "health-agent image-test" {
			t.Errorf("agent version = %q, %v: -X main.version did not take", out, err)
		}
	})

	t.Run("runtime stage", func(t *testing.T) {
		want := []string{
			"FROM gcr.io/distroless/static-debian12:nonroot",
			"USER 65532:65532",
			`HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/agent", "healthcheck"]`,
			`ENTRYPOINT ["/agent"]`,
		}
		for _, w := range want {
			if !slices.Contains(final, w) {
				t.Errorf("the runtime stage lacks %q; it has %q", w, final)
			}
		}
	})
}

// dockerfile returns the Dockerfile's instructions, continuation lines joined, comments dropped.
func dockerfile(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	for _, l := range readLines(t, path) {
		if strings.HasSuffix(l, `\`) {
			cur.WriteString(strings.TrimSuffix(l, `\`) + " ")
			continue
		}
		cur.WriteString(l)
		out = append(out, strings.Join(strings.Fields(cur.String()), " "))
		cur.Reset()
	}
	return out
}

// readLines returns path's non-blank lines that are not comments, trimmed.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// copyTree copies src to dst as the build context would have it: without tests and testdata.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir() && d.Name() == "testdata":
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case strings.HasSuffix(d.Name(), "_test.go"):
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}
