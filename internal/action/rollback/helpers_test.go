package rollback_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

const ns = "sockshop-production"

// template is a pod template labelled app=app with one container per
// name=image pair: template("carts", "carts", "carts:0.13.1").
func template(app string, containers ...string) corev1.PodTemplateSpec {
	t := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
	}
	for i := 0; i < len(containers); i += 2 {
		t.Spec.Containers = append(t.Spec.Containers, corev1.Container{Name: containers[i], Image: containers[i+1]})
	}
	return t
}

// controlledBy is the owner reference a controller puts on what it makes.
func controlledBy(kind, name string, uid types.UID) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, UID: uid, Controller: &yes}}
}

// clientset is client-go's fake holding objects, checking the
// resourceVersion a patch of a workload carries as the API server does (see
// checkResourceVersions).
func clientset(objects ...runtime.Object) *fake.Clientset {
	cs := fake.NewSimpleClientset(objects...)
	checkResourceVersions(cs)
	return cs
}

// checkResourceVersions makes cs do what the fake does not and the API
// server does: refuse with a Conflict a patch of a Deployment, StatefulSet
// or DaemonSet that carries a resourceVersion other than the object's. A
// patch that carries none goes through, as on the API server. It returns
// how many patches were refused so far.
//
// A reactor prepended after this one runs before it, and so can change the
// object between the read a patch was made from and the check.
func checkResourceVersions(cs *fake.Clientset) *atomic.Int32 {
	refused := new(atomic.Int32)
	cs.PrependReactor("patch", "*", func(a clienttesting.Action) (bool, runtime.Object, error) {
		p := a.(clienttesting.PatchAction)
		gvr := p.GetResource()
		switch gvr.Resource {
		case "deployments", "statefulsets", "daemonsets":
		default:
			return false, nil, nil
		}
		rv, err := patchResourceVersion(p)
		if err != nil {
			return true, nil, apierrors.NewBadRequest(err.Error())
		}
		if rv == "" {
			return false, nil, nil
		}
		// The tracker, not the clientset: the fake holds its lock while a
		// reactor runs.
		obj, err := cs.Tracker().Get(gvr, p.GetNamespace(), p.GetName())
		if err != nil {
			return false, nil, nil // the default reactor answers NotFound
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return true, nil, err
		}
		if m.GetResourceVersion() != rv {
			refused.Add(1)
			return true, nil, apierrors.NewConflict(gvr.GroupResource(), p.GetName(),
				errors.New("the object has been modified; please apply your changes to the latest version and try again"))
		}
		return false, nil, nil
	})
	return refused
}

// patchResourceVersion returns the resourceVersion a patch carries: the
// value of a JSON patch's replace op on /metadata/resourceVersion, or a
// strategic merge patch's metadata.resourceVersion; "" if none.
func patchResourceVersion(p clienttesting.PatchAction) (string, error) {
	switch p.GetPatchType() {
	case types.JSONPatchType:
		var ops []struct {
			Op, Path string
			Value    json.RawMessage
		}
		if err := json.Unmarshal(p.GetPatch(), &ops); err != nil {
			return "", err
		}
		var rv string
		for _, op := range ops {
			if op.Op == "replace" && op.Path == "/metadata/resourceVersion" {
				if err := json.Unmarshal(op.Value, &rv); err != nil {
					return "", err
				}
			}
		}
		return rv, nil
	case types.StrategicMergePatchType, types.MergePatchType:
		var obj struct {
			Metadata struct {
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		err := json.Unmarshal(p.GetPatch(), &obj)
		return obj.Metadata.ResourceVersion, err
	}
	return "", fmt.Errorf("patch type %s", p.GetPatchType())
}

// patches returns the patch actions the fake client recorded.
func patches(cs *fake.Clientset) []clienttesting.PatchAction {
	var ps []clienttesting.PatchAction
	for _, a := range cs.Actions() {
		if p, ok := a.(clienttesting.PatchAction); ok && a.GetVerb() == "patch" {
			ps = append(ps, p)
		}
	}
	return ps
}

// controllerRevision is what the StatefulSet and DaemonSet controllers
// record: a strategic merge patch that replaces the pod template.
func controllerRevision(t *testing.T, kind, owner string, uid types.UID, revision int64, tmpl corev1.PodTemplateSpec) *appsv1.ControllerRevision {
	t.Helper()
	b, err := json.Marshal(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["$patch"] = "replace"
	data, err := json.Marshal(map[string]any{"spec": map[string]any{"template": m}})
	if err != nil {
		t.Fatal(err)
	}
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name:            fmt.Sprintf("%s-%d", owner, revision),
			Namespace:       ns,
			Labels:          tmpl.Labels,
			OwnerReferences: controlledBy(kind, owner, uid),
		},
		Revision: revision,
		Data:     runtime.RawExtension{Raw: data},
	}
}
