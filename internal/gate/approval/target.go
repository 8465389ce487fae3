package approval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/gate"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// objects is what the gate does with the object an approval is asked on,
// whatever its type.
type objects interface {
	get(ctx context.Context, name string) (metav1.Object, error)
	patch(ctx context.Context, name string, pt types.PatchType, data []byte) (metav1.Object, error)
	watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// typedClient is the part of client-go's typed clients the gate uses.
type typedClient[T metav1.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// target is the object one approval is asked on: the workload, or for the
// kinds without one a Lease in the provider's namespace.
type target struct {
	objects
	// resource is kubectl's name of the kind, "deployment".
	resource, namespace, name string
	// apiVersion and kind, for the Events.
	apiVersion, kind string
	// lease: the object is the gate's own, created when missing.
	lease  bool
	create func(ctx context.Context) error
}

func (t *target) String() string { return t.resource + " " + t.namespace + "/" + t.name }

// command is the kubectl command that writes key for id. --overwrite, so
// that an approval of an earlier run left behind does not stand in the way.
func (t *target) command(key, id string) string {
	return fmt.Sprintf("kubectl annotate %s/%s -n %s %s=%s --overwrite", t.resource, t.name, t.namespace, key, id)
}

// target is where s's approval is asked.
func (g *Gate) target(s gate.Subject) (*target, error) {
	apps := g.client.AppsV1()
	switch s.Target.Kind {
	case workload.Deployment:
		return &target{objects: adapt(apps.Deployments(s.Target.Namespace)), resource: "deployment",
			namespace: s.Target.Namespace, name: s.Target.Name, apiVersion: "apps/v1", kind: "Deployment"}, nil
	case workload.StatefulSet:
		return &target{objects: adapt(apps.StatefulSets(s.Target.Namespace)), resource: "statefulset",
			namespace: s.Target.Namespace, name: s.Target.Name, apiVersion: "apps/v1", kind: "StatefulSet"}, nil
	case workload.DaemonSet:
		return &target{objects: adapt(apps.DaemonSets(s.Target.Namespace)), resource: "daemonset",
			namespace: s.Target.Namespace, name: s.Target.Name, apiVersion: "apps/v1", kind: "DaemonSet"}, nil
	case rollout:
		if g.dynamic == nil {
			return nil, fmt.Errorf("approval on %s: no client for Argo Rollouts here", s.Target)
		}
		gvr := schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}
		return &target{objects: dynamicObjects{g.dynamic.Resource(gvr).Namespace(s.Target.Namespace)}, resource: "rollout",
			namespace: s.Target.Namespace, name: s.Target.Name, apiVersion: "argoproj.io/v1alpha1", kind: "Rollout"}, nil
	case "":
	default:
		return nil, fmt.Errorf("approval on %s: the gate cannot mark a %s", s.Target, s.Target.Kind)
	}
	// No workload: a Lease per entry and Keptn service, in the provider's
	// namespace, kept between runs (its name is stable, so RBAC can grant
	// approvers exactly these Leases by resourceNames).
	leases := g.client.CoordinationV1().Leases(g.cfg.Namespace)
	name := leaseName(s)
	return &target{objects: adapt(leases), resource: "lease", namespace: g.cfg.Namespace, name: name,
		apiVersion: "coordination.k8s.io/v1", kind: "Lease", lease: true,
		create: func(ctx context.Context) error {
			_, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "keptn-action-provider", "app.kubernetes.io/component": "approval"}}},
				metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			return nil
		}}, nil
}

// rollout is Argo Rollouts' workload kind, reached through the dynamic
// client.
const rollout workload.Kind = "Rollout"

// dynamicObjects is objects for a kind the provider has no types for.
type dynamicObjects struct{ c dynamic.ResourceInterface }

func (d dynamicObjects) get(ctx context.Context, name string) (metav1.Object, error) {
	return d.c.Get(ctx, name, metav1.GetOptions{})
}

func (d dynamicObjects) patch(ctx context.Context, name string, pt types.PatchType, data []byte) (metav1.Object, error) {
	return d.c.Patch(ctx, name, pt, data, metav1.PatchOptions{})
}

func (d dynamicObjects) watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return d.c.Watch(ctx, opts)
}

// leaseName is "approval.<entry>.<project>-<stage>.<service>" when that is
// a valid name short enough for its Events' names, hashed when it is not.
func leaseName(s gate.Subject) string {
	name := strings.ToLower("approval." + s.Entry + "." + s.Request.Project + "-" + s.Request.Stage + "." + s.Request.Service)
	if len(name) <= 200 && len(validation.IsDNS1123Subdomain(name)) == 0 {
		return name
	}
	sum := sha256.Sum256([]byte(s.Entry + "\x00" + s.Request.Project + "\x00" + s.Request.Stage + "\x00" + s.Request.Service))
	return "approval-" + hex.EncodeToString(sum[:16])
}

// adapt makes a typed client of one kind an objects.
func adapt[T metav1.Object](c typedClient[T]) objects { return objectClient[T]{c} }

type objectClient[T metav1.Object] struct{ c typedClient[T] }

func (o objectClient[T]) get(ctx context.Context, name string) (metav1.Object, error) {
	return o.c.Get(ctx, name, metav1.GetOptions{})
}

func (o objectClient[T]) patch(ctx context.Context, name string, pt types.PatchType, data []byte) (metav1.Object, error) {
	return o.c.Patch(ctx, name, pt, data, metav1.PatchOptions{})
}

func (o objectClient[T]) watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return o.c.Watch(ctx, opts)
}

// open marks the object pending for id and returns it as patched.
func (t *target) open(ctx context.Context, id, request string) (metav1.Object, error) {
	if t.lease {
		if err := t.create(ctx); err != nil {
			return nil, fmt.Errorf("create the approval lease %s: %w", t, err)
		}
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		PendingKey: id, RequestKey: request,
	}}})
	if err != nil {
		return nil, fmt.Errorf("encode the approval request: %w", err)
	}
	obj, err := t.patch(ctx, t.name, types.MergePatchType, patch)
	if err != nil {
		return nil, fmt.Errorf("mark %s pending approval: %w", t, err)
	}
	return obj, nil
}

// close removes what this run left: the pending mark if it is still this
// run's (another run may have asked since), and the approve or reject that
// names id. Each removal tests the value it removes, so that nothing
// written since is lost. It runs past the action's context: the marks must
// not outlive the wait.
func (t *target) close(ctx context.Context, id string, last metav1.Object, log logrus.FieldLogger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if fresh, err := t.get(ctx, t.name); err == nil {
		last = fresh
	}
	a := last.GetAnnotations()
	var ops [][]map[string]any
	if a[PendingKey] == id {
		op := []map[string]any{test(PendingKey, id), remove(PendingKey)}
		if v, ok := a[RequestKey]; ok {
			op = append(op, test(RequestKey, v), remove(RequestKey))
		}
		ops = append(ops, op)
	}
	for _, k := range []string{ApproveKey, RejectKey} {
		if v, ok := a[k]; ok && names(v, id) {
			ops = append(ops, []map[string]any{test(k, v), remove(k)})
		}
	}
	for _, op := range ops {
		b, err := json.Marshal(op)
		if err == nil {
			_, err = t.patch(ctx, t.name, types.JSONPatchType, b)
		}
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsInvalid(err) && !apierrors.IsConflict(err) {
			log.WithError(err).WithField("triggeredid", id).Warn("could not remove the approval annotations from " + t.String())
		}
	}
}

func pointer(key string) string {
	return "/metadata/annotations/" + strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
}

func test(key, value string) map[string]any {
	return map[string]any{"op": "test", "path": pointer(key), "value": value}
}

func remove(key string) map[string]any { return map[string]any{"op": "remove", "path": pointer(key)} }

// verdict is what the annotations say of one triggered id.
type verdict int

const (
	pending verdict = iota
	approved
	rejected
)

// decision is a verdict, the object it was read on, and the note after
// the triggered id.
type decision struct {
	verdict verdict
	obj     metav1.Object
	note    string
}

// decide reads obj's annotations for id; a rejection wins over an approval.
func decide(obj metav1.Object, id string) decision {
	a := obj.GetAnnotations()
	for _, k := range []struct {
		key string
		v   verdict
	}{{RejectKey, rejected}, {ApproveKey, approved}} {
		if v, ok := a[k.key]; ok && names(v, id) {
			return decision{verdict: k.v, obj: obj, note: strings.TrimSpace(strings.TrimSpace(v)[len(id):])}
		}
	}
	return decision{obj: obj}
}

// names says whether an annotation's value names id: the id alone, or
// followed by white space and a note.
func names(value, id string) bool {
	v := strings.TrimSpace(value)
	rest, ok := strings.CutPrefix(v, id)
	return ok && id != "" && (rest == "" || rest[0] == ' ' || rest[0] == '\t')
}

// errGone: the object was deleted during the wait.
var errGone = errors.New("deleted")

// await watches the object until its annotations decide id, it is
// deleted, or ctx ends. first is the object as marked pending.
func (t *target) await(ctx context.Context, id string, first metav1.Object) (decision, error) {
	if d := decide(first, id); d.verdict != pending {
		return d, nil
	}
	last := decision{obj: first}
	rv := first.GetResourceVersion()
	for quick := 0; ; quick++ {
		if quick > 0 {
			// A watch that ends at once, again and again, must not make
			// this loop spin against the API server.
			timer := time.NewTimer(min(time.Duration(quick)*time.Second, 5*time.Second))
			select {
			case <-ctx.Done():
				timer.Stop()
				return last, ctx.Err()
			case <-timer.C:
			}
		}
		began := time.Now()
		w, err := t.watch(ctx, metav1.ListOptions{
			FieldSelector: "metadata.name=" + t.name, ResourceVersion: rv, AllowWatchBookmarks: true,
		})
		switch {
		case err != nil && ctx.Err() != nil:
			return last, ctx.Err()
		case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
			rv = "" // too old: start from now, the read below covers the gap
		case err != nil:
			return last, fmt.Errorf("watch %s: %w", t, err)
		}
		if w == nil {
			continue // expired: start again from now, after the pause
		}
		d, done, err := t.follow(ctx, w, id, &rv)
		w.Stop()
		if d.obj != nil {
			last = d
		}
		if done || err != nil {
			return last, err
		}
		if time.Since(began) > 10*time.Second {
			quick = -1 // a watch that lasted: the next starts at once
		}
	}
}

// follow reads one watch, after one read of the object: what changed
// before the watch began (a watch restarted from now) is not missed. It
// returns done with the decision, or not done when the watch ended and
// should be restarted from *rv.
func (t *target) follow(ctx context.Context, w watch.Interface, id string, rv *string) (decision, bool, error) {
	obj, err := t.get(ctx, t.name)
	switch {
	case apierrors.IsNotFound(err):
		return decision{}, true, errGone
	case err != nil && ctx.Err() != nil:
		return decision{}, true, ctx.Err()
	case err != nil:
		return decision{}, true, fmt.Errorf("read %s: %w", t, err)
	}
	if d := decide(obj, id); d.verdict != pending {
		return d, true, nil
	}
	if *rv == "" {
		*rv = obj.GetResourceVersion()
	}
	last := decision{obj: obj}
	for {
		select {
		case <-ctx.Done():
			return last, true, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return last, false, nil
			}
			switch ev.Type {
			case watch.Error:
				if err := apierrors.FromObject(ev.Object); apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
					*rv = ""
					return last, false, nil
				}
				return last, true, fmt.Errorf("watch %s: %w", t, apierrors.FromObject(ev.Object))
			case watch.Deleted:
				if m, ok := ev.Object.(metav1.Object); ok && m.GetName() == t.name {
					return last, true, errGone
				}
				continue
			}
			m, ok := ev.Object.(metav1.Object)
			if !ok {
				continue
			}
			*rv = m.GetResourceVersion()
			if ev.Type == watch.Bookmark || m.GetName() != t.name {
				continue // a fake client does not filter by field
			}
			last = decide(m, id)
			if last.verdict != pending {
				return last, true, nil
			}
		}
	}
}
