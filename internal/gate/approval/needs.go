package approval

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keptn-action-provider/action-provider/internal/gate"
)

// need is why a run needs approval, and how to change that.
type need struct {
	// why, for a person: "scaling deployment shop/carts from 2 to 0 replicas".
	why string
	// exempt says which setting would not have asked.
	exempt string
}

// needs decides whether the run needs approval: the entry's
// guardrails.approval first, then the defaults.
func (g *Gate) needs(s gate.Subject) (need, bool) {
	switch s.Settings[Rule] {
	case "never":
		return need{}, false
	case "required":
		what := fmt.Sprintf("%s %s", s.Kind, s.Namespace)
		if s.Object != nil {
			what = fmt.Sprintf("%s on %s", s.Kind, s.Target)
		}
		return need{
			why:    fmt.Sprintf("entry %q (%s) has guardrails.approval: required", s.Entry, what),
			exempt: fmt.Sprintf("guardrails.approval of entry %q sets it", s.Entry),
		}, true
	}
	if !g.cfg.Defaults {
		return need{}, false
	}
	exempt := fmt.Sprintf("guardrails.approval: never exempts entry %q, approval.defaults: false every entry", s.Entry)
	switch s.Kind {
	case "scale":
		if from, ok := g.scalesToZero(s); ok {
			return need{why: fmt.Sprintf("scaling %s from %d to 0 replicas", s.Target, from), exempt: exempt}, true
		}
	case "delete-pods":
		var v struct {
			All bool `json:"all"`
		}
		// The handler decoded the value strictly before the gates ran.
		if json.Unmarshal(s.Request.Value, &v) == nil && v.All {
			return need{why: fmt.Sprintf(`evicting every pod of %s ("all": true)`, s.Target), exempt: exempt}, true
		}
	case "rollback":
		for _, p := range g.cfg.ProductionStages {
			if strings.EqualFold(p, s.Request.Stage) {
				return need{
					why:    fmt.Sprintf("rolling back %s in production stage %q", s.Target, s.Request.Stage),
					exempt: exempt + ", approval.productionStages which stages",
				}, true
			}
		}
	}
	return need{}, false
}

// scalesToZero says whether a scale's value lands on 0 replicas, and from
// how many: an absolute 0, or a relative change from the replicas the
// target has. The forms are scale's (internal/action/scale/value.go): a
// bare string or number is relative, "replicas" is absolute unless a
// signed string.
func (g *Gate) scalesToZero(s gate.Subject) (int64, bool) {
	if !g.cfg.ScaleToZero {
		return 0, false
	}
	current, ok := replicas(s.Object)
	if !ok {
		return 0, false
	}
	var v any
	if json.Unmarshal(s.Request.Value, &v) != nil {
		return 0, false
	}
	relative := true
	if o, ok := v.(map[string]any); ok {
		relative = false
		v = nil
		for k, x := range o {
			if strings.EqualFold(k, "replicas") {
				v = x
			}
		}
	}
	var n int64
	switch x := v.(type) {
	case float64:
		n = int64(x)
	case string:
		var err error
		if n, err = strconv.ParseInt(x, 10, 32); err != nil {
			return 0, false
		}
		relative = relative || strings.HasPrefix(x, "+") || strings.HasPrefix(x, "-")
	default:
		return 0, false
	}
	if relative {
		n += current
	}
	return current, n == 0
}

// replicas is the workload's spec.replicas, 1 when unset as the API
// server defaults it.
func replicas(obj metav1.Object) (int64, bool) {
	var r *int32
	switch o := obj.(type) {
	case *appsv1.Deployment:
		r = o.Spec.Replicas
	case *appsv1.StatefulSet:
		r = o.Spec.Replicas
	default:
		return 0, false
	}
	if r == nil {
		return 1, true
	}
	return int64(*r), true
}
