// Package action defines the one small interface every remediation action
// implements, and the registry that maps the action names used in a Keptn
// remediation.yaml to those implementations.
//
// An action is deliberately ignorant of CloudEvents, retries and reporting:
// the lifecycle package owns those. An action gets a Request and returns an
// Outcome or an error, nothing else.
package action

import (
	"context"
	"encoding/json"
	"fmt"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
)

// AnnotationPrefix is the prefix of every annotation and label this
// project reads or writes.
const AnnotationPrefix = "keptn-action-provider.io/"

// Handler carries out one remediation action.
//
// Run must honour ctx: the lifecycle gives it the action's deadline and
// cancels it on shutdown. An error means the action could not be carried out
// and is reported as status "errored", result "fail", with the error as the
// message; the error text is read by a person in the Keptn Bridge, so it
// should say what was attempted and why it failed.
type Handler interface {
	Run(ctx context.Context, req Request) (Outcome, error)
}

// Validator is implemented by handlers that can check an action's value
// without running it, so that `action-provider lint` can find a value the
// handler would refuse before a problem in production does.
type Validator interface {
	Validate(value json.RawMessage) error
}

// Request is what an action needs from an action.triggered event.
type Request struct {
	// Action is the action name exactly as the event carried it, which may be
	// an alias (e.g. "scaling" for "scale").
	Action string
	// Value is data.action.value, undecoded: each action owns its format.
	// It is nil when the event had no value.
	Value json.RawMessage

	Project string
	Stage   string
	Service string
	Labels  map[string]string
	Problem keptnv2.ProblemDetails

	// KeptnContext and TriggeredID identify the event, for audit records.
	KeptnContext string
	TriggeredID  string

	// DryRun is set when the whole provider runs in dry-run mode. An action
	// may also honour a dry-run switch of its own in Value.
	DryRun bool
}

// Outcome is what a finished action reports. The zero value is a pass with
// no message; use the constructors for anything a person will read.
type Outcome struct {
	// Result is pass, warning or fail. Empty means pass.
	Result keptnv2.ResultType
	// Message says, for a person, what was done: "scaled deployment
	// sockshop-production/carts from 1 to 2 replicas".
	Message string
}

// Pass reports an action that did what was asked.
func Pass(message string) Outcome { return Outcome{Result: keptnv2.ResultPass, Message: message} }

// Warning reports an action that ran but whose effect is doubtful.
func Warning(message string) Outcome { return Outcome{Result: keptnv2.ResultWarning, Message: message} }

// Fail reports an action that ran as designed but did not reach its goal.
func Fail(message string) Outcome { return Outcome{Result: keptnv2.ResultFailed, Message: message} }

// Refusal is the error of an action that decided not to act because a rule
// forbids it: a guardrail, a bound, a PodDisruptionBudget. It is reported as
// status "succeeded", result "fail": the provider did its job, which was to
// refuse, and "errored" stays reserved for when it could not do its job (a
// bad value, an unreachable API server). A remediation sequence reads both
// as a failed action either way.
type Refusal struct {
	// Rule names what refused, in words an operator can search the docs
	// and the configuration for: "namespace allowlist", "cooldown".
	Rule string
	// Reason says why, with the facts: the namespace, the time left.
	Reason string
}

// Refuse returns a *Refusal by rule with a formatted reason.
func Refuse(rule, format string, args ...any) *Refusal {
	return &Refusal{Rule: rule, Reason: fmt.Sprintf(format, args...)}
}

func (r *Refusal) Error() string { return "refused (" + r.Rule + "): " + r.Reason }
