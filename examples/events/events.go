// Package events embeds the example action.triggered events, so that the
// demo runs from the binary alone.
package events

import "embed"

// FS holds the example events, *.json.
//
//go:embed *.json
var FS embed.FS
