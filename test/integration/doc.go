// Package integration holds the end-to-end reliability suites: a real agent (pkg/agent) on loopback,
// its dependencies played by chaos servers (internal/chaos), driven through faults, load, hostile
// clients, reloads and breaker churn. It has no code outside its tests.
package integration
