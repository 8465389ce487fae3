// Package sandboxseed carries the objects the built-in sandbox cluster starts
// with, so that the provider binary can demonstrate its actions without a
// real cluster. Each *.yaml file holds one or more Kubernetes objects.
package sandboxseed

import "embed"

// FS holds the seed files.
//
//go:embed *.yaml
var FS embed.FS
