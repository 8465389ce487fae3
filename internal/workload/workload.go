// Package workload finds the Kubernetes workload a remediation action
// targets, following Keptn's naming conventions unless the action's value
// says otherwise.
package workload

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/kube"
)

// Kind is a kind of workload, spelled as in the Kubernetes API.
type Kind string

// The workload kinds actions know about.
const (
	Deployment  Kind = "Deployment"
	StatefulSet Kind = "StatefulSet"
	DaemonSet   Kind = "DaemonSet"
)

// ParseKind reads a kind the way kubectl does: case-insensitive, singular,
// plural or short name, optionally followed by the group (".apps", or
// ".argoproj.io" for an Argo Rollout, short name "ro" as kubectl argo
// rollouts spells it).
func ParseKind(s string) (Kind, error) {
	k := strings.ToLower(s)
	switch strings.TrimSuffix(k, ".apps") {
	case "deployment", "deployments", "deploy":
		return Deployment, nil
	case "statefulset", "statefulsets", "sts":
		return StatefulSet, nil
	case "daemonset", "daemonsets", "ds":
		return DaemonSet, nil
	}
	switch strings.TrimSuffix(k, "."+RolloutGroup) {
	case "rollout", "rollouts", "ro":
		return Rollout, nil
	}
	return "", fmt.Errorf("unknown kind %q; accepted: deployment (deploy), statefulset (sts), daemonset (ds), rollout (ro, Argo Rollouts)", s)
}

// Ref names one workload.
type Ref struct {
	Kind      Kind
	Namespace string
	Name      string
}

// String names the workload as kubectl does in its messages:
// "deployment sockshop-production/carts".
func (r Ref) String() string {
	return strings.ToLower(string(r.Kind)) + " " + r.Namespace + "/" + r.Name
}

// Selector is the part of an action's value that overrides which workload it
// targets. Actions embed it in their value type so that every action accepts
// the same keys. Empty fields keep the Keptn defaults.
type Selector struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Kind      string `json:"kind,omitempty"`
}

// primarySuffix is what Keptn's blue/green ("duplicate") strategy appends to
// the name of the deployment that carries the traffic.
const primarySuffix = "-primary"

// Resolve works out which workload an action targets and checks it exists.
//
// The kind defaults to Deployment and the namespace to Keptn's
// "<project>-<stage>". When the selector names the workload, that workload
// must exist. Otherwise the name comes from the Keptn service: "<service>",
// falling back to "<service>-primary" (Keptn's blue/green strategy) when
// "<service>" does not exist or is the idle canary, that is, at 0 replicas
// beside a "<service>-primary": helm-service scales the canary to 0 once a
// release is promoted, and acting on it would change nothing that serves.
//
// Errors from the API are wrapped, so apierrors.IsNotFound and friends work
// on the result.
//
// Resolve has no dynamic client, so it finds no Argo Rollout; see
// ResolveObjectWith.
func Resolve(ctx context.Context, c kube.Interface, req action.Request, sel Selector) (Ref, error) {
	ref, _, err := ResolveObjectWith(ctx, c, nil, req, sel)
	return ref, err
}

// ResolveObject is Resolve, also returning the workload as it was read, so
// that a caller that needs its metadata does not read it a second time.
func ResolveObject(ctx context.Context, c kube.Interface, req action.Request, sel Selector) (Ref, metav1.Object, error) {
	return ResolveObjectWith(ctx, c, nil, req, sel)
}

// ResolveObjectWith is ResolveObject that also reaches Argo Rollouts
// through dyn (nil: none). A Rollout is the target when the selector's kind
// says so ("kind": "rollout"), or, with no kind given, when the service has
// neither a Deployment "<service>" nor "<service>-primary" but a Rollout
// "<service>": a project that deploys with Argo Rollouts then needs no
// "kind" in its remediation. Argo's blue/green runs inside one Rollout, so
// there is no "-primary" Rollout to fall back to.
func ResolveObjectWith(ctx context.Context, c kube.Interface, dyn dynamic.Interface, req action.Request, sel Selector) (Ref, metav1.Object, error) {
	ref := Ref{Kind: Deployment, Namespace: sel.Namespace, Name: sel.Name}
	if sel.Kind != "" {
		k, err := ParseKind(sel.Kind)
		if err != nil {
			return Ref{}, nil, err
		}
		ref.Kind = k
	}

	ns, err := Namespace(req, sel)
	if err != nil {
		return Ref{}, nil, err
	}
	ref.Namespace = ns

	if ref.Name != "" {
		if errs := validation.IsDNS1123Subdomain(ref.Name); len(errs) > 0 {
			return Ref{}, nil, fmt.Errorf("invalid name %q: %s", ref.Name, strings.Join(errs, "; "))
		}
		obj, _, err := read(ctx, c, dyn, ref)
		if err != nil {
			if apierrors.IsNotFound(err) {
				return Ref{}, nil, fmt.Errorf("%s does not exist: %w", ref, err)
			}
			return Ref{}, nil, fmt.Errorf("get %s: %w", ref, err)
		}
		return ref, obj, nil
	}

	if req.Service == "" {
		return Ref{}, nil, errors.New(`cannot tell the workload: the event has no service, and the value sets no "name"`)
	}
	if errs := validation.IsDNS1123Subdomain(req.Service + primarySuffix); len(errs) > 0 {
		return Ref{}, nil, fmt.Errorf("service %q is not a valid workload name: %s", req.Service, strings.Join(errs, "; "))
	}
	service := ref
	service.Name = req.Service
	obj, replicas, err := read(ctx, c, dyn, service)
	switch {
	case err == nil && replicas != 0:
		return service, obj, nil
	case err != nil && !apierrors.IsNotFound(err):
		return Ref{}, nil, fmt.Errorf("get %s: %w", service, err)
	}
	primary := ref
	primary.Name = req.Service + primarySuffix
	if ref.Kind == Rollout {
		if err != nil {
			return Ref{}, nil, fmt.Errorf("%s does not exist: %w", service, err)
		}
		return service, obj, nil // one Rollout does blue/green itself
	}
	pobj, _, perr := read(ctx, c, dyn, primary)
	switch {
	case perr == nil:
		return primary, pobj, nil
	case !apierrors.IsNotFound(perr):
		return Ref{}, nil, fmt.Errorf("get %s: %w", primary, perr)
	case err == nil:
		return service, obj, nil // at 0 replicas, but there is no primary
	}
	if sel.Kind == "" && dyn != nil {
		// No Deployment at all: the service may be an Argo Rollout. A
		// cluster without its CRD answers NotFound, like a missing one.
		ro := Ref{Kind: Rollout, Namespace: ref.Namespace, Name: req.Service}
		robj, _, rerr := read(ctx, c, dyn, ro)
		switch {
		case rerr == nil:
			return ro, robj, nil
		case !apierrors.IsNotFound(rerr):
			return Ref{}, nil, fmt.Errorf("no %s %s or %s in namespace %s, and get %s: %w",
				strings.ToLower(string(ref.Kind)), req.Service, primary.Name, ref.Namespace, ro, rerr)
		}
		return Ref{}, nil, fmt.Errorf("no %s %s or %s, nor rollout %s, in namespace %s: %w",
			strings.ToLower(string(ref.Kind)), req.Service, primary.Name, req.Service, ref.Namespace, err)
	}
	return Ref{}, nil, fmt.Errorf("no %s %s or %s in namespace %s: %w",
		strings.ToLower(string(ref.Kind)), req.Service, primary.Name, ref.Namespace, err)
}

// Namespace is the namespace an action targets: the value's, else Keptn's
// "<project>-<stage>". It needs no API call, so that a namespace the
// provider may not touch is refused before anything in it is read.
func Namespace(req action.Request, sel Selector) (string, error) {
	ns := sel.Namespace
	if ns == "" {
		if req.Project == "" || req.Stage == "" {
			return "", errors.New(`cannot tell the namespace: the event has no project or stage, and the value sets no "namespace"`)
		}
		ns = req.Project + "-" + req.Stage
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return "", fmt.Errorf("invalid namespace %q: %s", ns, strings.Join(errs, "; "))
	}
	return ns, nil
}

// Object reads the workload's metadata: its annotations for the guards, its
// UID for the audit record.
func Object(ctx context.Context, c kube.Interface, ref Ref) (metav1.Object, error) {
	obj, _, err := read(ctx, c, nil, ref)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", ref, err)
	}
	return obj, nil
}

// Desired reads the workload's desired replica count (spec.replicas); -1
// for a DaemonSet, which has none.
func Desired(ctx context.Context, c kube.Interface, ref Ref) (int32, error) {
	_, n, err := read(ctx, c, nil, ref)
	return n, err
}

// read gets the workload once: the object and its desired replica count
// (-1 for a DaemonSet). A Rollout needs dyn. API errors come back
// unwrapped.
func read(ctx context.Context, c kube.Interface, dyn dynamic.Interface, ref Ref) (metav1.Object, int32, error) {
	var replicas *int32
	var obj metav1.Object
	switch ref.Kind {
	case Deployment:
		d, err := c.AppsV1().Deployments(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, 0, err
		}
		obj, replicas = d, d.Spec.Replicas
	case StatefulSet:
		s, err := c.AppsV1().StatefulSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, 0, err
		}
		obj, replicas = s, s.Spec.Replicas
	case DaemonSet:
		ds, err := c.AppsV1().DaemonSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return nil, 0, err
		}
		return ds, -1, nil
	case Rollout:
		u, ro, err := GetRollout(ctx, dyn, ref)
		if err != nil {
			return nil, 0, err
		}
		obj, replicas = u, ro.Spec.Replicas
	default:
		return nil, 0, fmt.Errorf("unsupported kind %q", ref.Kind)
	}
	if replicas == nil {
		return obj, 1, nil // the API server's default
	}
	return obj, *replicas, nil
}
