// Package k8s holds the Kubernetes manifests of health-agent (a kustomize base, its components and
// overlays) and the tests that render them. It is its own module so that kustomize and k8s.io/api stay
// out of the agent's go.mod and binary.
package k8s
