package sandbox

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
)

// listKinds are the kinds of other tools the gates read, by resource: the
// dynamic fake needs to know what a list of each is called.
var listKinds = map[schema.GroupVersionResource]string{
	{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}:             "ApplicationList",
	{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}:                 "RolloutList",
	{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}: "KustomizationList",
	{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}:        "HelmReleaseList",
	{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}:                "ScaledObjectList",
}

// NewDynamic is the sandbox's dynamic client, for the objects of Argo CD,
// Flux, KEDA and Argo Rollouts, with objs in it (unstructured).
func NewDynamic(objs ...runtime.Object) dynamic.Interface {
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds, objs...)
}
