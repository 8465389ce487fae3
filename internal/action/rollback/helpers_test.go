package rollback_test

import (
	"encoding/json"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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
