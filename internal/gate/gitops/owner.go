package gitops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// The marks Argo CD and Flux leave on what they apply.
const (
	// ArgoCDTrackingID is Argo CD's annotation tracking (the default since
	// v3, optional since v2.2): "<app>:<group>/<kind>:<namespace>/<name>",
	// <app> being "<namespace>_<name>" for an Application outside Argo
	// CD's own namespace (Application.InstanceName). Argo CD trusts it only
	// when it names the object it is on (isSelfReferencedObj), so that a
	// copied annotation does not claim the copy; so does the gate.
	// https://argo-cd.readthedocs.io/en/stable/user-guide/resource_tracking/
	ArgoCDTrackingID = "argocd.argoproj.io/tracking-id"
	// ArgoCDInstanceLabel is Argo CD's label tracking (the default before
	// v3). Helm charts set the same label to the release's name, so it
	// counts only when an Application of that name exists where the gate
	// may look (argocdNamespaces).
	ArgoCDInstanceLabel = "app.kubernetes.io/instance"
	// ArgoCDCustomInstanceLabel is the label Argo CD's documentation
	// suggests for application.instanceLabelKey, to avoid that clash.
	ArgoCDCustomInstanceLabel = "argocd.argoproj.io/instance"

	// Flux's kustomize-controller labels every object it applies with the
	// Kustomization's name and namespace, helm-controller's post-renderer
	// every object of a release with the HelmRelease's.
	// https://fluxcd.io/flux/components/kustomize/kustomizations/
	// https://fluxcd.io/flux/components/helm/helmreleases/
	FluxKustomizeName      = "kustomize.toolkit.fluxcd.io/name"
	FluxKustomizeNamespace = "kustomize.toolkit.fluxcd.io/namespace"
	FluxHelmName           = "helm.toolkit.fluxcd.io/name"
	FluxHelmNamespace      = "helm.toolkit.fluxcd.io/namespace"
)

// The owners' resources.
var (
	Applications   = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}
	Kustomizations = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
	HelmReleases   = schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}
)

// owner is the Argo CD Application, Flux Kustomization or HelmRelease that
// manages a target.
type owner struct {
	gvr             schema.GroupVersionResource
	namespace, name string
	// evidence is the mark that told, for the message: "label
	// kustomize.toolkit.fluxcd.io/name".
	evidence string
	// obj is the owner as read; nil when it could not be (unreach says
	// why): the marks alone then decide that it is managed.
	obj     *unstructured.Unstructured
	unreach error
}

func (o *owner) argo() bool { return o.gvr == Applications }

// String names the owner: "flux kustomization flux-system/apps".
func (o *owner) String() string {
	switch o.gvr {
	case Applications:
		return "argo cd application " + o.namespace + "/" + o.name
	case HelmReleases:
		return "flux helmrelease " + o.namespace + "/" + o.name
	}
	return "flux kustomization " + o.namespace + "/" + o.name
}

// find tells who manages the target, if anyone: Flux first, whose labels
// only Flux writes (the HelmRelease before the Kustomization: a chart's
// object may carry both, and helm-controller renders it), then Argo CD.
// Marks whose owner is gone (an object left behind by a deleted
// Kustomization or a non-cascading delete of an Application) mean nothing
// will revert it: such a target is not managed. An error means the gate
// cannot tell.
func (g *Gate) find(ctx context.Context, ref workload.Ref, obj metav1.Object) (*owner, error) {
	labels, annotations := obj.GetLabels(), obj.GetAnnotations()
	for _, c := range []struct {
		gvr      schema.GroupVersionResource
		name, ns string
		nameKey  string
	}{
		{HelmReleases, labels[FluxHelmName], labels[FluxHelmNamespace], FluxHelmName},
		{Kustomizations, labels[FluxKustomizeName], labels[FluxKustomizeNamespace], FluxKustomizeName},
	} {
		if c.name == "" {
			continue
		}
		ns := c.ns
		if ns == "" {
			ns = ref.Namespace // written by hand without the namespace label: the object's own
		}
		o := &owner{gvr: c.gvr, namespace: ns, name: c.name, evidence: "label " + c.nameKey}
		gone, err := g.read(ctx, o)
		if err != nil {
			return nil, err
		}
		if !gone {
			return o, nil
		}
	}

	if id := annotations[ArgoCDTrackingID]; id != "" {
		if app, ok := trackedApp(id, ref); ok {
			o, err := g.application(ctx, app, "annotation "+ArgoCDTrackingID, true)
			if err != nil || o != nil {
				return o, err
			}
		}
	}
	for _, key := range []string{ArgoCDCustomInstanceLabel, ArgoCDInstanceLabel} {
		if app := labels[key]; app != "" {
			o, err := g.application(ctx, app, "label "+key, false)
			if err != nil || o != nil {
				return o, err
			}
		}
	}
	return nil, nil
}

// trackedApp reads a tracking id, and returns its application when the id
// names ref: its kind, namespace and name (the group follows from the
// kind among the workloads the provider acts on).
func trackedApp(id string, ref workload.Ref) (string, bool) {
	parts := strings.Split(id, ":")
	if len(parts) != 3 || parts[0] == "" {
		return "", false
	}
	_, kind, _ := strings.Cut(parts[1], "/")
	return parts[0], kind == string(ref.Kind) && parts[2] == ref.Namespace+"/"+ref.Name
}

// application finds the Application an instance name (tracking id or
// label) means: "<namespace>_<name>", or "<name>" in Argo CD's own
// namespace, which the gate takes to be one of argocdNamespaces. certain
// says the mark is Argo CD's alone (the tracking id): an Application the
// gate may not read still owns the target. A label names an owner only
// when its Application exists.
func (g *Gate) application(ctx context.Context, instance, evidence string, certain bool) (*owner, error) {
	namespaces, name := g.settings.ArgoCDNamespaces, instance
	if ns, n, ok := strings.Cut(instance, "_"); ok {
		name = n
		if !slices.Contains(namespaces, ns) {
			if !certain {
				return nil, nil
			}
			return &owner{gvr: Applications, namespace: ns, name: name, evidence: evidence,
				unreach: fmt.Errorf("namespace %s is not in gitops.argocdNamespaces %v", ns, namespaces)}, nil
		}
		namespaces = []string{ns}
	}
	if g.dyn == nil {
		if !certain {
			return nil, nil
		}
		return &owner{gvr: Applications, namespace: namespaces[0], name: name, evidence: evidence, unreach: errNoClient}, nil
	}
	var unreach *owner
	for _, ns := range namespaces {
		o := &owner{gvr: Applications, namespace: ns, name: name, evidence: evidence}
		gone, err := g.read(ctx, o)
		switch {
		case err != nil:
			return nil, err
		case !gone && o.obj != nil:
			return o, nil
		case !gone && unreach == nil:
			unreach = o // forbidden: it may be here
		}
	}
	if unreach != nil && certain {
		return unreach, nil
	}
	return nil, nil
}

var errNoClient = errors.New("the provider has no client for Argo CD's and Flux's objects")

// read gets o's object into o.obj. gone: it does not exist. An object the
// provider may not read (forbidden) is left nil with the reason; any other
// failure is the error.
func (g *Gate) read(ctx context.Context, o *owner) (gone bool, err error) {
	if g.dyn == nil {
		o.unreach = errNoClient
		return false, nil
	}
	obj, err := g.dyn.Resource(o.gvr).Namespace(o.namespace).Get(ctx, o.name, metav1.GetOptions{})
	switch {
	case err == nil:
		o.obj = obj
		return false, nil
	case apierrors.IsNotFound(err):
		return true, nil
	case apierrors.IsForbidden(err):
		o.unreach = err
		return false, nil
	}
	return false, fmt.Errorf("get %s: %w", o, err)
}
