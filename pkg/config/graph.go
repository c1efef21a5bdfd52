package config

import (
	"fmt"
	"slices"
	"strings"
)

// Order returns the probe names in a topological order of dependsOn: every probe after the probes it
// depends on, and otherwise in config order. It fails, wrapping ErrInvalid, on unknown names,
// self-references and cycles.
func (c *Config) Order() ([]string, error) {
	edges, errs := c.dependencyGraph()
	if len(errs) > 0 {
		return nil, newInvalid(errs)
	}
	n := len(c.Probes)
	done := make([]bool, n)
	out := make([]string, 0, n)
	// n is small (tens of probes): take the first ready probe each round, which keeps config order.
	for len(out) < n {
		for i := range n {
			if done[i] || slices.ContainsFunc(edges[i], func(k int) bool { return !done[k] }) {
				continue
			}
			done[i] = true
			out = append(out, c.Probes[i].Name)
			break
		}
	}
	return out, nil
}

// dependencyGraph returns, for each probe, the indexes of the probes it depends on, with the problems
// of dependsOn: unknown names, self-references, duplicates and cycles.
func (c *Config) dependencyGraph() ([][]int, []error) {
	index := make(map[string]int, len(c.Probes))
	for i, p := range c.Probes {
		if _, dup := index[p.Name]; !dup {
			index[p.Name] = i
		}
	}
	edges := make([][]int, len(c.Probes))
	var errs []error
	for i, p := range c.Probes {
		seen := map[string]bool{}
		for j, d := range p.DependsOn {
			path := fmt.Sprintf("probes[%d].dependsOn[%d]", i, j)
			k, known := index[d]
			switch {
			case d == p.Name:
				errs = append(errs, Errorf(path, "a probe cannot depend on itself, got %q", d))
			case seen[d]:
				errs = append(errs, Errorf(path, "duplicate %q", d))
			case !known:
				errs = append(errs, Errorf(path, "unknown probe %q", d))
			default:
				edges[i] = append(edges[i], k)
			}
			seen[d] = true
		}
	}
	return edges, append(errs, c.cycles(edges)...)
}

// cycles reports each cycle a depth-first walk finds (one per back edge), once, at the dependsOn of
// its probe that comes first in the config, naming the whole cycle ("cycle a -> b -> c -> a").
func (c *Config) cycles(edges [][]int) []error {
	const (
		unvisited = iota
		onStack
		finished
	)
	state := make([]int, len(edges))
	var stack []int
	reported := map[string]bool{}
	var errs []error
	var visit func(i int)
	visit = func(i int) {
		state[i] = onStack
		stack = append(stack, i)
		for _, k := range edges[i] {
			switch state[k] {
			case unvisited:
				visit(k)
			case onStack:
				cycle := slices.Clone(stack[slices.Index(stack, k):])
				first := slices.Index(cycle, slices.Min(cycle))
				cycle = slices.Concat(cycle[first:], cycle[:first])
				names := make([]string, 0, len(cycle)+1)
				for _, m := range cycle {
					names = append(names, c.Probes[m].Name)
				}
				s := strings.Join(append(names, names[0]), " -> ")
				if !reported[s] {
					reported[s] = true
					errs = append(errs, Errorf(fmt.Sprintf("probes[%d].dependsOn", cycle[0]), "cycle %s", s))
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = finished
	}
	for i := range edges {
		if state[i] == unvisited {
			visit(i)
		}
	}
	return errs
}
