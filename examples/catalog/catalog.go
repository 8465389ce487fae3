// Package catalog embeds the example catalogs, so that the demo runs from
// the binary alone.
package catalog

import _ "embed"

// Sandbox is sandbox.yaml, the demo's catalog.
//
//go:embed sandbox.yaml
var Sandbox []byte

// Gates is gates.yaml, the catalog of the demo's last part: every gate.
//
//go:embed gates.yaml
var Gates []byte
