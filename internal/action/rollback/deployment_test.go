package rollback_test

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"testing"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-action-provider/action-provider/internal/action/rollback"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

const cartsUID = types.UID("uid-carts")

var carts = workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: "carts"}

// deploymentRV is the resourceVersion of the Deployment deployment makes;
// a test that changes it gives it another.
const deploymentRV = "100"

// deployment is carts at the given revision ("" for none) with tmpl and
// the annotations given as key, value pairs.
func deployment(revision string, tmpl corev1.PodTemplateSpec, annotations ...string) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "carts", Namespace: ns, UID: cartsUID, ResourceVersion: deploymentRV},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "carts"}},
			Template: tmpl,
		},
	}
	if revision != "" || len(annotations) > 0 {
		d.Annotations = map[string]string{}
	}
	if revision != "" {
		d.Annotations["deployment.kubernetes.io/revision"] = revision
	}
	for i := 0; i < len(annotations); i += 2 {
		d.Annotations[annotations[i]] = annotations[i+1]
	}
	return d
}

// replicaSet is a ReplicaSet of carts at revision, as the deployment
// controller makes it: the template and the ReplicaSet labelled with the
// template's hash.
func replicaSet(revision int64, tmpl corev1.PodTemplateSpec, annotations ...string) *appsv1.ReplicaSet {
	hash := "h" + strconv.FormatInt(revision, 10)
	tmpl = *tmpl.DeepCopy()
	tmpl.Labels["pod-template-hash"] = hash
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:            "carts-" + hash,
			Namespace:       ns,
			Labels:          tmpl.Labels,
			Annotations:     map[string]string{"deployment.kubernetes.io/revision": strconv.FormatInt(revision, 10)},
			OwnerReferences: controlledBy("Deployment", "carts", cartsUID),
		},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels},
			Template: tmpl,
		},
	}
	for i := 0; i < len(annotations); i += 2 {
		rs.Annotations[annotations[i]] = annotations[i+1]
	}
	return rs
}

var (
	v0130 = template("carts", "carts", "carts:0.13.0")
	v0131 = template("carts", "carts", "carts:0.13.1")
	v0132 = template("carts", "carts", "carts:0.13.2")
)

// history is carts at revision 3 with the ReplicaSets of revisions 1 to 3.
func history() []runtime.Object {
	return []runtime.Object{
		deployment("3", v0132,
			"kubectl.kubernetes.io/last-applied-configuration", "applied-3",
			"note", "v3",
			"only-on-the-deployment", "yes"),
		replicaSet(1, v0130, "note", "v1"),
		replicaSet(2, v0131,
			"note", "v2",
			"kubectl.kubernetes.io/last-applied-configuration", "applied-2",
			"deployment.kubernetes.io/revision-history", "1",
			"deployment.kubernetes.io/desired-replicas", "2",
			"deployment.kubernetes.io/max-replicas", "3",
			"deprecated.deployment.rollback.to", "1",
			// Copied from the Deployment while it was opted out; its owner
			// has since removed the opt-out, and a rollback must not bring
			// it back.
			"keptn-action-provider.io/opt-out", "true"),
		replicaSet(3, v0132, "note", "v3"),
	}
}

func TestMutateDeployment(t *testing.T) {
	// What kubectl leaves after rolling history() back to revision 2: the
	// Deployment's own rollout annotations, the ReplicaSet's others.
	rolledBackTo2 := map[string]string{
		"deployment.kubernetes.io/revision":                "3",
		"kubectl.kubernetes.io/last-applied-configuration": "applied-3",
		"note": "v2",
	}
	tests := []struct {
		name       string
		objects    []runtime.Object
		toRevision int64
		dryRun     bool

		want    pipeline.Change
		wantErr string
		// image is the image of the Deployment's container afterwards;
		// annotations, when set, are its annotations afterwards.
		image       string
		annotations map[string]string
	}{
		{
			name:    "previous revision",
			objects: history(),
			want: pipeline.Change{
				Message: "rolled back deployment sockshop-production/carts from revision 3 to revision 2 (image carts:0.13.2 → carts:0.13.1)",
				Reason:  "RolledBack",
				Before:  "revision 3 (image carts:0.13.2)",
				After:   "revision 2 (image carts:0.13.1)",
				Changed: true, Rollout: true,
			},
			image:       "carts:0.13.1",
			annotations: rolledBackTo2,
		},
		{
			name:       "to revision",
			objects:    history(),
			toRevision: 1,
			want: pipeline.Change{
				Message: "rolled back deployment sockshop-production/carts from revision 3 to revision 1 (image carts:0.13.2 → carts:0.13.0)",
				Reason:  "RolledBack",
				Before:  "revision 3 (image carts:0.13.2)",
				After:   "revision 1 (image carts:0.13.0)",
				Changed: true, Rollout: true,
			},
			image: "carts:0.13.0",
			annotations: map[string]string{
				"deployment.kubernetes.io/revision":                "3",
				"kubectl.kubernetes.io/last-applied-configuration": "applied-3",
				"note": "v1",
			},
		},
		{
			name:    "dry run writes nothing",
			objects: history(),
			dryRun:  true,
			want: pipeline.Change{
				Message: "would roll back deployment sockshop-production/carts from revision 3 to revision 2 (image carts:0.13.2 → carts:0.13.1)",
				Reason:  "RolledBack",
				Before:  "revision 3 (image carts:0.13.2)",
				After:   "revision 2 (image carts:0.13.1)",
			},
			image: "carts:0.13.2",
		},
		{
			name:       "no such revision",
			objects:    history(),
			toRevision: 7,
			want: pipeline.Change{
				Message: "cannot roll back deployment sockshop-production/carts to revision 7: there is no such revision (available: 1, 2, 3)",
				Result:  keptnv2.ResultFailed,
			},
			image: "carts:0.13.2",
		},
		{
			name:    "no previous revision",
			objects: []runtime.Object{deployment("1", v0130), replicaSet(1, v0130)},
			want: pipeline.Change{
				Message: "cannot roll back deployment sockshop-production/carts: it has no previous revision (only revision 1)",
				Result:  keptnv2.ResultFailed,
			},
			image: "carts:0.13.0",
		},
		{
			name:    "no history at all",
			objects: []runtime.Object{deployment("", v0130)},
			want: pipeline.Change{
				Message: "cannot roll back deployment sockshop-production/carts: it has no revision history",
				Result:  keptnv2.ResultFailed,
			},
			image: "carts:0.13.0",
		},
		{
			// The ReplicaSet's template carries pod-template-hash; the
			// Deployment's does not, and still it is the same template.
			name:       "already at the target",
			objects:    history(),
			toRevision: 3,
			want: pipeline.Change{
				Message: "deployment sockshop-production/carts already runs the pod template of revision 3; nothing to do",
				Reason:  "RolledBack",
			},
			image: "carts:0.13.2",
		},
		{
			name:    "paused",
			objects: func() []runtime.Object { o := history(); o[0].(*appsv1.Deployment).Spec.Paused = true; return o }(),
			wantErr: "cannot roll back deployment sockshop-production/carts: it is paused; resume it first",
			image:   "carts:0.13.2",
		},
		{
			// Revision 2 here has the labels but not carts for a controller:
			// another Deployment's, and an orphan that carts only owns.
			name: "replicasets carts does not control are ignored",
			objects: func() []runtime.Object {
				other := replicaSet(2, template("carts", "carts", "evil:1"))
				other.Name, other.OwnerReferences = "other", controlledBy("Deployment", "other", "uid-other")
				adopted := replicaSet(2, template("carts", "carts", "evil:2"))
				adopted.Name = "adopted"
				adopted.OwnerReferences[0].Controller = nil
				return []runtime.Object{deployment("3", v0132), replicaSet(1, v0130), other, adopted, replicaSet(3, v0132)}
			}(),
			want: pipeline.Change{
				Message: "rolled back deployment sockshop-production/carts from revision 3 to revision 1 (image carts:0.13.2 → carts:0.13.0)",
				Reason:  "RolledBack",
				Before:  "revision 3 (image carts:0.13.2)",
				After:   "revision 1 (image carts:0.13.0)",
				Changed: true, Rollout: true,
			},
			image: "carts:0.13.0",
		},
		{
			// Without the revision annotation, the current revision is the
			// highest; kubectl's patch replaces the missing annotations.
			name:    "no annotations on the deployment",
			objects: []runtime.Object{deployment("", v0131), replicaSet(1, v0130, "note", "v1"), replicaSet(2, v0131)},
			want: pipeline.Change{
				Message: "rolled back deployment sockshop-production/carts from revision 2 to revision 1 (image carts:0.13.1 → carts:0.13.0)",
				Reason:  "RolledBack",
				Before:  "revision 2 (image carts:0.13.1)",
				After:   "revision 1 (image carts:0.13.0)",
				Changed: true, Rollout: true,
			},
			image:       "carts:0.13.0",
			annotations: map[string]string{"note": "v1"},
		},
		{
			name: "several containers are named",
			objects: []runtime.Object{
				deployment("2", template("carts", "carts", "carts:0.13.1", "envoy", "envoy:1.29")),
				replicaSet(1, template("carts", "carts", "carts:0.13.0", "envoy", "envoy:1.29")),
				replicaSet(2, template("carts", "carts", "carts:0.13.1", "envoy", "envoy:1.29")),
			},
			want: pipeline.Change{
				Message: "rolled back deployment sockshop-production/carts from revision 2 to revision 1 " +
					"(images carts=carts:0.13.1, envoy=envoy:1.29 → carts=carts:0.13.0, envoy=envoy:1.29)",
				Reason:  "RolledBack",
				Before:  "revision 2 (images carts=carts:0.13.1, envoy=envoy:1.29)",
				After:   "revision 1 (images carts=carts:0.13.0, envoy=envoy:1.29)",
				Changed: true, Rollout: true,
			},
			image: "carts:0.13.0",
		},
		{
			name: "same image, other changes",
			objects: func() []runtime.Object {
				withEnv := template("carts", "carts", "carts:0.13.1")
				withEnv.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "DEBUG", Value: "1"}}
				return []runtime.Object{deployment("2", withEnv), replicaSet(1, v0131), replicaSet(2, withEnv)}
			}(),
			want: pipeline.Change{
				Message: "rolled back deployment sockshop-production/carts from revision 2 to revision 1 " +
					"(image carts:0.13.1 unchanged; other parts of the pod template differ)",
				Reason:  "RolledBack",
				Before:  "revision 2 (image carts:0.13.1)",
				After:   "revision 1 (image carts:0.13.1)",
				Changed: true, Rollout: true,
			},
			image: "carts:0.13.1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := clientset(tt.objects...)
			got, err := rollback.NewMutator(adapt.Clientset(cs), tt.toRevision).Mutate(context.Background(), carts, tt.dryRun)
			switch {
			case tt.wantErr != "":
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Mutate error = %v, want %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("Mutate: %v", err)
			case got != tt.want:
				t.Errorf("Mutate =\n %+v\nwant\n %+v", got, tt.want)
			}

			ps := patches(cs)
			switch {
			case !tt.want.Changed && len(ps) > 0:
				t.Errorf("patched %d times, want no patch: %s", len(ps), ps[0].GetPatch())
			case tt.want.Changed && len(ps) != 1:
				t.Fatalf("patched %d times, want once", len(ps))
			case tt.want.Changed && ps[0].GetPatchType() != types.JSONPatchType:
				t.Errorf("patch type %s, want kubectl's %s", ps[0].GetPatchType(), types.JSONPatchType)
			}

			d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "carts", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if img := d.Spec.Template.Spec.Containers[0].Image; img != tt.image {
				t.Errorf("image afterwards = %s, want %s", img, tt.image)
			}
			if want := map[string]string{"app": "carts"}; !maps.Equal(d.Spec.Template.Labels, want) {
				t.Errorf("template labels afterwards = %v, want %v (no pod-template-hash)", d.Spec.Template.Labels, want)
			}
			if tt.annotations != nil && !maps.Equal(d.Annotations, tt.annotations) {
				t.Errorf("annotations afterwards = %v, want %v", d.Annotations, tt.annotations)
			}
		})
	}
}

var deployments = appsv1.SchemeGroupVersion.WithResource("deployments")

// TestMutateDeploymentReplansOnConflict rolls out revision 4 between the
// read the rollback is worked out from and the patch. The patch, made from
// the stale read, must be refused, and the rollback go to the revision
// before 4 instead, with 4's annotations.
func TestMutateDeploymentReplansOnConflict(t *testing.T) {
	cs := fake.NewSimpleClientset(history()...)
	refused := checkResourceVersions(cs)
	v0140 := template("carts", "carts", "carts:0.14.0")
	n := 0
	cs.PrependReactor("patch", "deployments", func(clienttesting.Action) (bool, runtime.Object, error) {
		if n++; n == 1 {
			d := deployment("4", v0140, "kubectl.kubernetes.io/last-applied-configuration", "applied-4", "note", "v4")
			d.ResourceVersion = "101"
			if err := cs.Tracker().Update(deployments, d, ns); err != nil {
				t.Error(err)
			}
			if err := cs.Tracker().Add(replicaSet(4, v0140, "note", "v4")); err != nil {
				t.Error(err)
			}
		}
		return false, nil, nil
	})

	got, err := rollback.NewMutator(adapt.Clientset(cs), 0).Mutate(context.Background(), carts, false)
	if err != nil {
		t.Fatal(err)
	}
	want := "rolled back deployment sockshop-production/carts from revision 4 to revision 3 (image carts:0.14.0 → carts:0.13.2)"
	if got.Message != want {
		t.Errorf("Message = %q, want %q", got.Message, want)
	}
	ps := patches(cs)
	if len(ps) != 2 || refused.Load() != 1 {
		t.Fatalf("%d patches, %d refused; want the stale one refused and one more that lands", len(ps), refused.Load())
	}
	if rv, err := patchResourceVersion(ps[1]); err != nil || rv != "101" {
		t.Errorf("second patch carries resourceVersion %q (%v), want 101, that of the fresh read", rv, err)
	}
	d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "carts", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "carts:0.13.2" {
		t.Errorf("image afterwards = %s, want carts:0.13.2", img)
	}
	wantAnn := map[string]string{
		"deployment.kubernetes.io/revision":                "4",
		"kubectl.kubernetes.io/last-applied-configuration": "applied-4",
		"note": "v3",
	}
	if !maps.Equal(d.Annotations, wantAnn) {
		t.Errorf("annotations afterwards = %v, want %v", d.Annotations, wantAnn)
	}
}

// TestMutateDeploymentKeepsChanging gives up, with the Conflict and without
// a patch landing, when the Deployment changes before every patch.
func TestMutateDeploymentKeepsChanging(t *testing.T) {
	cs := fake.NewSimpleClientset(history()...)
	refused := checkResourceVersions(cs)
	n := 0
	cs.PrependReactor("patch", "deployments", func(clienttesting.Action) (bool, runtime.Object, error) {
		n++
		d := deployment("3", v0132, "touched", strconv.Itoa(n))
		d.ResourceVersion = strconv.Itoa(100 + n)
		if err := cs.Tracker().Update(deployments, d, ns); err != nil {
			t.Error(err)
		}
		return false, nil, nil
	})

	_, err := rollback.NewMutator(adapt.Clientset(cs), 0).Mutate(context.Background(), carts, false)
	want := "cannot roll back deployment sockshop-production/carts: it kept changing while the rollback was worked out: " +
		`Operation cannot be fulfilled on deployments.apps "carts": the object has been modified; please apply your changes to the latest version and try again`
	if err == nil || err.Error() != want {
		t.Errorf("Mutate error = %v, want %q", err, want)
	}
	if !apierrors.IsConflict(err) {
		t.Errorf("error %v does not wrap the Conflict", err)
	}
	ps := patches(cs)
	if want := retry.DefaultRetry.Steps; len(ps) != want || int(refused.Load()) != want {
		t.Errorf("%d patches, %d refused; want %d, all refused", len(ps), refused.Load(), want)
	}
	d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "carts", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "carts:0.13.2" {
		t.Errorf("image afterwards = %s, want carts:0.13.2", img)
	}
}

func TestMutateAPIErrors(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		verb    string
		ref     workload.Ref
		wantErr string
	}{
		{"missing deployment", "", workload.Ref{Kind: workload.Deployment, Namespace: ns, Name: "nope"},
			`get deployment sockshop-production/nope: deployments.apps "nope" not found`},
		{"list fails", "list", carts, "list the replicasets of deployment sockshop-production/carts: boom"},
		{"patch fails", "patch", carts, "roll back deployment sockshop-production/carts from revision 3 to revision 2: boom"},
		{"unknown kind", "", workload.Ref{Kind: "CronJob", Namespace: ns, Name: "carts"},
			"cannot roll back cronjob sockshop-production/carts: only deployments, statefulsets and daemonsets keep revisions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := clientset(history()...)
			if tt.verb != "" {
				cs.PrependReactor(tt.verb, "*", func(clienttesting.Action) (bool, runtime.Object, error) {
					return true, nil, boom
				})
			}
			_, err := rollback.NewMutator(adapt.Clientset(cs), 0).Mutate(context.Background(), tt.ref, false)
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Mutate error = %v, want %q", err, tt.wantErr)
			}
			if tt.verb != "" && !errors.Is(err, boom) {
				t.Errorf("error %v does not wrap the API error", err)
			}
		})
	}
}
