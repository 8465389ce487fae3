package rollback_test

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	keptnv2 "github.com/keptn/go-utils/pkg/lib/v0_2_0"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/action/rollback"
	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/pipeline"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

const (
	cartsDBUID = types.UID("uid-carts-db")
	exporterID = types.UID("uid-node-exporter")
)

var (
	cartsDB  = workload.Ref{Kind: workload.StatefulSet, Namespace: ns, Name: "carts-db"}
	exporter = workload.Ref{Kind: workload.DaemonSet, Namespace: ns, Name: "node-exporter"}

	mongo40 = template("carts-db", "mongo", "mongo:4.0")
	mongo41 = template("carts-db", "mongo", "mongo:4.1")
	mongo42 = template("carts-db", "mongo", "mongo:4.2")

	exporter10 = template("node-exporter", "exporter", "node-exporter:1.0")
	exporter11 = template("node-exporter", "exporter", "node-exporter:1.1")
)

// The resourceVersions of what statefulSet and daemonSet make; a test that
// changes one gives it another.
const (
	statefulSetRV = "200"
	daemonSetRV   = "300"
)

// statefulSet is carts-db on tmpl, its status naming updateRevision.
func statefulSet(tmpl corev1.PodTemplateSpec, updateRevision string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "carts-db", Namespace: ns, UID: cartsDBUID, ResourceVersion: statefulSetRV},
		Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "carts-db"}},
			Template: *tmpl.DeepCopy(),
		},
		Status: appsv1.StatefulSetStatus{UpdateRevision: updateRevision},
	}
}

func daemonSet(tmpl corev1.PodTemplateSpec) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "node-exporter", Namespace: ns, UID: exporterID, ResourceVersion: daemonSetRV},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "node-exporter"}},
			Template: *tmpl.DeepCopy(),
		},
	}
}

func TestMutateControllerRevisions(t *testing.T) {
	stsRev := func(t *testing.T, rev int64, tmpl corev1.PodTemplateSpec) runtime.Object {
		return controllerRevision(t, "StatefulSet", "carts-db", cartsDBUID, rev, tmpl)
	}
	dsRev := func(t *testing.T, rev int64, tmpl corev1.PodTemplateSpec) runtime.Object {
		return controllerRevision(t, "DaemonSet", "node-exporter", exporterID, rev, tmpl)
	}
	stsHistory := func(t *testing.T) []runtime.Object {
		return []runtime.Object{statefulSet(mongo42, "carts-db-3"), stsRev(t, 1, mongo40), stsRev(t, 2, mongo41), stsRev(t, 3, mongo42)}
	}
	tests := []struct {
		name       string
		ref        workload.Ref
		objects    func(t *testing.T) []runtime.Object
		toRevision int64
		dryRun     bool
		want       pipeline.Change
		image      string // of the workload's container afterwards
	}{
		{
			name: "statefulset previous revision", ref: cartsDB, objects: stsHistory,
			want: pipeline.Change{
				Message: "rolled back statefulset sockshop-production/carts-db from revision 3 to revision 2 (image mongo:4.2 → mongo:4.1)",
				Reason:  "RolledBack",
				Before:  "revision 3 (image mongo:4.2)",
				After:   "revision 2 (image mongo:4.1)",
				Changed: true, Rollout: true,
			},
			image: "mongo:4.1",
		},
		{
			name: "statefulset to revision", ref: cartsDB, objects: stsHistory, toRevision: 1,
			want: pipeline.Change{
				Message: "rolled back statefulset sockshop-production/carts-db from revision 3 to revision 1 (image mongo:4.2 → mongo:4.0)",
				Reason:  "RolledBack",
				Before:  "revision 3 (image mongo:4.2)",
				After:   "revision 1 (image mongo:4.0)",
				Changed: true, Rollout: true,
			},
			image: "mongo:4.0",
		},
		{
			name: "statefulset dry run", ref: cartsDB, objects: stsHistory, dryRun: true,
			want: pipeline.Change{
				Message: "would roll back statefulset sockshop-production/carts-db from revision 3 to revision 2 (image mongo:4.2 → mongo:4.1)",
				Reason:  "RolledBack",
				Before:  "revision 3 (image mongo:4.2)",
				After:   "revision 2 (image mongo:4.1)",
			},
			image: "mongo:4.2",
		},
		{
			name: "statefulset already at the target", ref: cartsDB, objects: stsHistory, toRevision: 3,
			want: pipeline.Change{
				Message: "statefulset sockshop-production/carts-db already runs the pod template of revision 3; nothing to do",
				Reason:  "RolledBack",
			},
			image: "mongo:4.2",
		},
		{
			name: "statefulset no such revision", ref: cartsDB, objects: stsHistory, toRevision: 9,
			want: pipeline.Change{
				Message: "cannot roll back statefulset sockshop-production/carts-db to revision 9: there is no such revision (available: 1, 2, 3)",
				Result:  keptnv2.ResultFailed,
			},
			image: "mongo:4.2",
		},
		{
			name: "statefulset no previous revision", ref: cartsDB,
			objects: func(t *testing.T) []runtime.Object {
				return []runtime.Object{statefulSet(mongo40, "carts-db-1"), stsRev(t, 1, mongo40)}
			},
			want: pipeline.Change{
				Message: "cannot roll back statefulset sockshop-production/carts-db: it has no previous revision (only revision 1)",
				Result:  keptnv2.ResultFailed,
			},
			image: "mongo:4.0",
		},
		{
			// Rolled back to revision 2 already, before the controller
			// renumbered it: the status, not the highest revision, says
			// which revision is current.
			name: "statefulset current revision from its status", ref: cartsDB,
			objects: func(t *testing.T) []runtime.Object {
				return []runtime.Object{statefulSet(mongo41, "carts-db-2"), stsRev(t, 1, mongo40), stsRev(t, 2, mongo41), stsRev(t, 3, mongo42)}
			},
			want: pipeline.Change{
				Message: "rolled back statefulset sockshop-production/carts-db from revision 2 to revision 1 (image mongo:4.1 → mongo:4.0)",
				Reason:  "RolledBack",
				Before:  "revision 2 (image mongo:4.1)",
				After:   "revision 1 (image mongo:4.0)",
				Changed: true, Rollout: true,
			},
			image: "mongo:4.0",
		},
		{
			name: "statefulset ignores revisions it does not control", ref: cartsDB,
			objects: func(t *testing.T) []runtime.Object {
				other := controllerRevision(t, "StatefulSet", "other", "uid-other", 2, template("carts-db", "mongo", "evil:1"))
				return []runtime.Object{statefulSet(mongo42, "carts-db-3"), stsRev(t, 1, mongo40), other, stsRev(t, 3, mongo42)}
			},
			want: pipeline.Change{
				Message: "rolled back statefulset sockshop-production/carts-db from revision 3 to revision 1 (image mongo:4.2 → mongo:4.0)",
				Reason:  "RolledBack",
				Before:  "revision 3 (image mongo:4.2)",
				After:   "revision 1 (image mongo:4.0)",
				Changed: true, Rollout: true,
			},
			image: "mongo:4.0",
		},
		{
			name: "daemonset previous revision", ref: exporter,
			objects: func(t *testing.T) []runtime.Object {
				return []runtime.Object{daemonSet(exporter11), dsRev(t, 1, exporter10), dsRev(t, 2, exporter11)}
			},
			want: pipeline.Change{
				Message: "rolled back daemonset sockshop-production/node-exporter from revision 2 to revision 1 (image node-exporter:1.1 → node-exporter:1.0)",
				Reason:  "RolledBack",
				Before:  "revision 2 (image node-exporter:1.1)",
				After:   "revision 1 (image node-exporter:1.0)",
				Changed: true, Rollout: true,
			},
			image: "node-exporter:1.0",
		},
		{
			name: "daemonset already at the target", ref: exporter, toRevision: 2,
			objects: func(t *testing.T) []runtime.Object {
				return []runtime.Object{daemonSet(exporter11), dsRev(t, 1, exporter10), dsRev(t, 2, exporter11)}
			},
			want: pipeline.Change{
				Message: "daemonset sockshop-production/node-exporter already runs the pod template of revision 2; nothing to do",
				Reason:  "RolledBack",
			},
			image: "node-exporter:1.1",
		},
		{
			name: "daemonset no previous revision", ref: exporter,
			objects: func(t *testing.T) []runtime.Object {
				return []runtime.Object{daemonSet(exporter11), dsRev(t, 2, exporter11)}
			},
			want: pipeline.Change{
				Message: "cannot roll back daemonset sockshop-production/node-exporter: it has no previous revision (only revision 2)",
				Result:  keptnv2.ResultFailed,
			},
			image: "node-exporter:1.1",
		},
		{
			name: "daemonset no history", ref: exporter,
			objects: func(t *testing.T) []runtime.Object { return []runtime.Object{daemonSet(exporter11)} },
			want: pipeline.Change{
				Message: "cannot roll back daemonset sockshop-production/node-exporter: it has no revision history",
				Result:  keptnv2.ResultFailed,
			},
			image: "node-exporter:1.1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := clientset(tt.objects(t)...)
			got, err := rollback.NewMutator(adapt.Clientset(cs), tt.toRevision).Mutate(context.Background(), tt.ref, tt.dryRun)
			if err != nil {
				t.Fatalf("Mutate: %v", err)
			}
			if got != tt.want {
				t.Errorf("Mutate =\n %+v\nwant\n %+v", got, tt.want)
			}

			ps := patches(cs)
			switch {
			case !tt.want.Changed && len(ps) > 0:
				t.Errorf("patched %d times, want no patch: %s", len(ps), ps[0].GetPatch())
			case tt.want.Changed && len(ps) != 1:
				t.Fatalf("patched %d times, want once", len(ps))
			case tt.want.Changed && ps[0].GetPatchType() != types.StrategicMergePatchType:
				t.Errorf("patch type %s, want kubectl's %s", ps[0].GetPatchType(), types.StrategicMergePatchType)
			}

			var tmpl corev1.PodTemplateSpec
			switch tt.ref.Kind {
			case workload.StatefulSet:
				s, err := cs.AppsV1().StatefulSets(ns).Get(context.Background(), tt.ref.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				tmpl = s.Spec.Template
			case workload.DaemonSet:
				ds, err := cs.AppsV1().DaemonSets(ns).Get(context.Background(), tt.ref.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				tmpl = ds.Spec.Template
			}
			if n := len(tmpl.Spec.Containers); n != 1 {
				t.Fatalf("%d containers afterwards, want 1", n)
			}
			if img := tmpl.Spec.Containers[0].Image; img != tt.image {
				t.Errorf("image afterwards = %s, want %s", img, tt.image)
			}
		})
	}
}

// TestMutateStatefulSetReplansOnConflict rolls out revision 4 between the
// read the rollback is worked out from and the patch. The patch, made from
// the stale read, must be refused, and the rollback go to the revision
// before 4 instead.
func TestMutateStatefulSetReplansOnConflict(t *testing.T) {
	mongo43 := template("carts-db", "mongo", "mongo:4.3")
	cs := fake.NewSimpleClientset(
		statefulSet(mongo42, "carts-db-3"),
		controllerRevision(t, "StatefulSet", "carts-db", cartsDBUID, 1, mongo40),
		controllerRevision(t, "StatefulSet", "carts-db", cartsDBUID, 2, mongo41),
		controllerRevision(t, "StatefulSet", "carts-db", cartsDBUID, 3, mongo42),
	)
	refused := checkResourceVersions(cs)
	n := 0
	cs.PrependReactor("patch", "statefulsets", func(clienttesting.Action) (bool, runtime.Object, error) {
		if n++; n == 1 {
			s := statefulSet(mongo43, "carts-db-4")
			s.ResourceVersion = "201"
			if err := cs.Tracker().Update(appsv1.SchemeGroupVersion.WithResource("statefulsets"), s, ns); err != nil {
				t.Error(err)
			}
			if err := cs.Tracker().Add(controllerRevision(t, "StatefulSet", "carts-db", cartsDBUID, 4, mongo43)); err != nil {
				t.Error(err)
			}
		}
		return false, nil, nil
	})

	got, err := rollback.NewMutator(adapt.Clientset(cs), 0).Mutate(context.Background(), cartsDB, false)
	if err != nil {
		t.Fatal(err)
	}
	want := "rolled back statefulset sockshop-production/carts-db from revision 4 to revision 3 (image mongo:4.3 → mongo:4.2)"
	if got.Message != want {
		t.Errorf("Message = %q, want %q", got.Message, want)
	}
	ps := patches(cs)
	if len(ps) != 2 || refused.Load() != 1 {
		t.Fatalf("%d patches, %d refused; want the stale one refused and one more that lands", len(ps), refused.Load())
	}
	if rv, err := patchResourceVersion(ps[1]); err != nil || rv != "201" {
		t.Errorf("second patch carries resourceVersion %q (%v), want 201, that of the fresh read", rv, err)
	}
	s, err := cs.AppsV1().StatefulSets(ns).Get(context.Background(), "carts-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := s.Spec.Template.Spec.Containers[0].Image; img != "mongo:4.2" {
		t.Errorf("image afterwards = %s, want mongo:4.2", img)
	}
}

// TestMutatePatchIsConditional checks the patch of each kind: kubectl's,
// carrying the resourceVersion of the workload read, which makes the API
// server refuse it if the workload has changed since.
func TestMutatePatchIsConditional(t *testing.T) {
	stsRev2 := func(t *testing.T) *appsv1.ControllerRevision {
		return controllerRevision(t, "StatefulSet", "carts-db", cartsDBUID, 2, mongo41)
	}
	dsRev1 := func(t *testing.T) *appsv1.ControllerRevision {
		return controllerRevision(t, "DaemonSet", "node-exporter", exporterID, 1, exporter10)
	}
	tests := []struct {
		name    string
		ref     workload.Ref
		objects func(t *testing.T) []runtime.Object
		rv      string
		// target is the ControllerRevision rolled back to, whose data the
		// patch must otherwise be; nil for a Deployment.
		target func(t *testing.T) *appsv1.ControllerRevision
	}{
		{
			name: "deployment", ref: carts, rv: deploymentRV,
			objects: func(*testing.T) []runtime.Object { return history() },
		},
		{
			name: "statefulset", ref: cartsDB, rv: statefulSetRV, target: stsRev2,
			objects: func(t *testing.T) []runtime.Object {
				return []runtime.Object{
					statefulSet(mongo42, "carts-db-3"),
					controllerRevision(t, "StatefulSet", "carts-db", cartsDBUID, 1, mongo40),
					stsRev2(t),
					controllerRevision(t, "StatefulSet", "carts-db", cartsDBUID, 3, mongo42),
				}
			},
		},
		{
			name: "daemonset", ref: exporter, rv: daemonSetRV, target: dsRev1,
			objects: func(t *testing.T) []runtime.Object {
				return []runtime.Object{
					daemonSet(exporter11),
					dsRev1(t),
					controllerRevision(t, "DaemonSet", "node-exporter", exporterID, 2, exporter11),
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The plain fake, which applies any patch: this test reads the
			// patch, not what the API server makes of it.
			cs := fake.NewSimpleClientset(tt.objects(t)...)
			if _, err := rollback.NewMutator(adapt.Clientset(cs), 0).Mutate(context.Background(), tt.ref, false); err != nil {
				t.Fatal(err)
			}
			ps := patches(cs)
			if len(ps) != 1 {
				t.Fatalf("patched %d times, want once", len(ps))
			}
			patch := ps[0].GetPatch()

			if tt.target == nil {
				var ops []struct {
					Op, Path string
					Value    any
				}
				if err := json.Unmarshal(patch, &ops); err != nil {
					t.Fatalf("patch %s: %v", patch, err)
				}
				var paths []string
				for _, op := range ops {
					if op.Op != "replace" {
						t.Errorf("op %q on %s, want replace", op.Op, op.Path)
					}
					paths = append(paths, op.Path)
				}
				if want := []string{"/metadata/resourceVersion", "/spec/template", "/metadata/annotations"}; !slices.Equal(paths, want) {
					t.Fatalf("patch replaces %v, want %v: %s", paths, want, patch)
				}
				if ops[0].Value != tt.rv {
					t.Errorf("patch replaces the resourceVersion with %v, want %s, that of the read", ops[0].Value, tt.rv)
				}
				return
			}

			var got, want map[string]any
			if err := json.Unmarshal(patch, &got); err != nil {
				t.Fatalf("patch %s: %v", patch, err)
			}
			if err := json.Unmarshal(tt.target(t).Data.Raw, &want); err != nil {
				t.Fatal(err)
			}
			if meta := got["metadata"]; !reflect.DeepEqual(meta, map[string]any{"resourceVersion": tt.rv}) {
				t.Errorf("patch metadata = %v, want the resourceVersion %s of the read, only", meta, tt.rv)
			}
			delete(got, "metadata")
			if !reflect.DeepEqual(got, want) {
				t.Errorf("patch without its metadata =\n %v\nwant the controllerrevision's data, as kubectl sends it\n %v", got, want)
			}
		})
	}
}
