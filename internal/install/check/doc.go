// Package check verifies a cluster before and after Skein is installed:
// each check reports ok, warning or failure with a hint a person can act on.
// It only reads (and asks the API server what the caller may do); it never
// changes the cluster.
package check
