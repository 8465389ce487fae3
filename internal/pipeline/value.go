package pipeline

import (
	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// Options are the keys that the value of every workload action accepts
// besides its own. Action packages embed Options in their value type and
// decode it with Decode.
type Options struct {
	workload.Selector
	// DryRun asks for this one action to decide and report without writing.
	DryRun bool `json:"dryRun,omitempty"`
	// Wait, when false, skips waiting for the rollout to converge.
	Wait *bool `json:"wait,omitempty"`
	// Timeout bounds the wait, overriding the configured default: "90s".
	Timeout action.Duration `json:"timeout,omitempty"`
}

// OptionKeys lists the keys of Options, for the accepted-forms text of an
// action's value errors.
const OptionKeys = `"namespace", "name", "kind", "dryRun", "wait" and "timeout"`
