// Package docs holds the reference pages of health-agent (Markdown) and the test that keeps them true:
// every relative link and anchor resolves, and the documented config keys are the schema's.
package docs
