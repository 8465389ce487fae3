package rollout

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/keptn-action-provider/action-provider/internal/kube"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

// listWatch lists and watches one kind of object in one namespace.
type listWatch struct {
	list  func(context.Context, metav1.ListOptions) (runtime.Object, error)
	watch func(context.Context, metav1.ListOptions) (watch.Interface, error)
}

// typedListWatch adapts a typed client, whose List returns its own list
// type.
func typedListWatch[L runtime.Object](list func(context.Context, metav1.ListOptions) (L, error), w func(context.Context, metav1.ListOptions) (watch.Interface, error)) listWatch {
	return listWatch{
		list: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := list(ctx, o)
			if err != nil {
				return nil, err
			}
			return l, nil
		},
		watch: w,
	}
}

// source keeps a set of objects up to date as an informer does, with one
// list and then one watch from the list's resourceVersion, but in Wait's own
// goroutine: Wait selects on events(), so nothing outlives it. The
// requests it makes do not grow with the number of changes: a closed watch
// is resumed from the last resourceVersion, and only an expired one (410
// Gone), an error event, or a watch quiet for longer than resync costs a new
// list.
type source struct {
	what string // "deployment ns/carts", "the pods of deployment ns/carts"
	lw   listWatch
	opts metav1.ListOptions // the selectors the server filters by
	// keep is the same selection made here: the fake clientsets of the
	// sandbox and the tests ignore field and label selectors.
	keep func(metav1.Object) bool

	objs    map[string]runtime.Object // by name
	listed  bool                      // objs holds a list's answer
	relist  bool                      // the next start lists first
	rv      string                    // where a new watch resumes
	w       watch.Interface           // nil while not watching
	started time.Time                 // of w
	since   time.Time                 // the last list or event of w
	retryAt time.Time                 // when a stopped source starts again
}

// events is w's channel, nil (never ready) while not watching.
func (s *source) events() <-chan watch.Event {
	if s.w == nil {
		return nil
	}
	return s.w.ResultChan()
}

func (s *source) stopWatch() {
	if s.w != nil {
		s.w.Stop()
		s.w = nil
	}
}

// due reports whether s should (re)start now; a watch quiet for resync is
// stopped first, in case it broke without closing.
func (s *source) due(now time.Time, resync time.Duration) bool {
	if s.w != nil {
		if now.Sub(s.since) < resync {
			return false
		}
		s.stopWatch()
		s.relist = true
		return true
	}
	return !now.Before(s.retryAt)
}

// next is when s is due.
func (s *source) next(resync time.Duration) time.Time {
	if s.w != nil {
		return s.since.Add(resync)
	}
	return s.retryAt
}

// start lists if it must, then watches. changed reports whether objs
// changed. After an error s is stopped and due again at retryAt.
func (s *source) start(ctx context.Context, interval time.Duration) (changed bool, err error) {
	listed := false
	if !s.listed || s.relist {
		list, err := s.lw.list(ctx, s.opts)
		if err != nil {
			s.retryAt = time.Now().Add(interval)
			return false, fmt.Errorf("list %s: %w", s.what, err)
		}
		items, err := apimeta.ExtractList(list)
		if err != nil {
			s.retryAt = time.Now().Add(interval)
			return false, fmt.Errorf("list %s: %w", s.what, err)
		}
		s.objs = make(map[string]runtime.Object, len(items))
		for _, o := range items {
			if m, err := apimeta.Accessor(o); err == nil && s.keep(m) {
				s.objs[m.GetName()] = o
			}
		}
		if lm, err := apimeta.ListAccessor(list); err == nil {
			s.rv = lm.GetResourceVersion()
		}
		s.listed, s.relist, changed, listed = true, false, true, true
	}
	opts := s.opts
	opts.ResourceVersion, opts.AllowWatchBookmarks = s.rv, true
	w, err := s.lw.watch(ctx, opts)
	if err != nil {
		s.relist = apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
		s.retryAt = time.Now().Add(interval)
		if s.relist && !listed {
			s.retryAt = time.Now() // resume from a fresh list at once
		}
		return changed, fmt.Errorf("watch %s: %w", s.what, err)
	}
	now := time.Now()
	s.w, s.started, s.since = w, now, now
	return changed, nil
}

// apply takes one event of w (ok false: the channel closed). It reports
// whether objs changed, and an error the watch ended with.
func (s *source) apply(ev watch.Event, ok bool, interval time.Duration) (changed bool, err error) {
	now := time.Now()
	if !ok {
		// The server ends every watch after a while: resume where it
		// stopped, at once unless it keeps closing at once.
		s.w = nil
		s.retryAt = now
		if now.Sub(s.started) < interval {
			s.retryAt = now.Add(interval)
		}
		return false, nil
	}
	s.since = now
	if ev.Type == watch.Error {
		s.stopWatch()
		s.relist = true
		err := apierrors.FromObject(ev.Object)
		s.retryAt = now.Add(interval)
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			s.retryAt = now // too old to resume: list afresh at once
		}
		return false, fmt.Errorf("watch %s: %w", s.what, err)
	}
	m, err := apimeta.Accessor(ev.Object)
	if err != nil {
		return false, nil // not an object: nothing to keep
	}
	if rv := m.GetResourceVersion(); rv != "" {
		s.rv = rv
	}
	switch ev.Type {
	case watch.Added, watch.Modified:
		if s.keep(m) {
			s.objs[m.GetName()] = ev.Object
			return true, nil
		}
		fallthrough // no longer selected
	case watch.Deleted:
		if _, had := s.objs[m.GetName()]; had {
			delete(s.objs, m.GetName())
			return true, nil
		}
	}
	return false, nil
}

// watcher follows one workload and, when its pods count, its pods and the
// ReplicaSets between them.
type watcher struct {
	c    kube.Interface
	ref  workload.Ref
	gr   schema.GroupResource
	self *source
	rs   *source // Deployments and Rollouts: their ReplicaSets
	pods *source
	// ownerUID is the workload's, which owns its pods or their ReplicaSets.
	ownerUID types.UID
}

func newWatcher(c kube.Interface, dyn dynamic.Interface, ref workload.Ref) (*watcher, error) {
	byName := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", ref.Name).String()}
	var (
		lw listWatch
		gr = schema.GroupResource{Group: ref.Kind.Group()}
	)
	switch ref.Kind {
	case workload.Deployment:
		api := c.AppsV1().Deployments(ref.Namespace)
		lw, gr.Resource = typedListWatch(api.List, api.Watch), "deployments"
	case workload.StatefulSet:
		api := c.AppsV1().StatefulSets(ref.Namespace)
		lw, gr.Resource = typedListWatch(api.List, api.Watch), "statefulsets"
	case workload.DaemonSet:
		api := c.AppsV1().DaemonSets(ref.Namespace)
		lw, gr.Resource = typedListWatch(api.List, api.Watch), "daemonsets"
	case workload.Rollout:
		if dyn == nil {
			return nil, workload.ErrNoDynamic
		}
		api := dyn.Resource(workload.RolloutResource()).Namespace(ref.Namespace)
		lw, gr = typedListWatch(api.List, api.Watch), workload.RolloutResource().GroupResource()
	default:
		return nil, fmt.Errorf("%w: %q", errUnsupportedKind, ref.Kind)
	}
	return &watcher{c: c, ref: ref, gr: gr, self: &source{
		what: ref.String(), lw: lw, opts: byName,
		keep: func(m metav1.Object) bool { return m.GetName() == ref.Name },
	}}, nil
}

// sources are the sources in the order they start: the workload first,
// since the others select by its selector and owner.
func (w *watcher) sources() []*source {
	all := []*source{w.self}
	if w.rs != nil {
		all = append(all, w.rs)
	}
	if w.pods != nil {
		all = append(all, w.pods)
	}
	return all
}

func (w *watcher) stop() {
	for _, s := range w.sources() {
		s.stopWatch()
	}
}

// object is the workload as last seen; nil before the first list, and a
// NotFound error once a list or a watch says it is gone.
func (w *watcher) object() (runtime.Object, error) {
	if !w.self.listed {
		return nil, nil
	}
	obj, ok := w.self.objs[w.ref.Name]
	if !ok {
		return nil, apierrors.NewNotFound(w.gr, w.ref.Name)
	}
	return obj, nil
}

// followPods adds the sources of the workload's pods, selected by its
// label selector (immutable for every kind judged here).
func (w *watcher) followPods(obj runtime.Object) error {
	var (
		ls  *metav1.LabelSelector
		uid types.UID
	)
	switch o := obj.(type) {
	case *appsv1.Deployment:
		ls, uid = o.Spec.Selector, o.UID
	case *appsv1.StatefulSet:
		ls, uid = o.Spec.Selector, o.UID
	case *appsv1.DaemonSet:
		ls, uid = o.Spec.Selector, o.UID
	case *unstructured.Unstructured:
		uid = o.GetUID()
		if m, ok, _ := unstructured.NestedMap(o.Object, "spec", "selector"); ok {
			ls = &metav1.LabelSelector{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, ls); err != nil {
				return fmt.Errorf("selector of %s: %w", w.ref, err)
			}
		}
	default:
		return fmt.Errorf("%w: %T", errUnsupportedKind, obj)
	}
	sel := labels.Everything()
	if ls != nil {
		var err error
		if sel, err = metav1.LabelSelectorAsSelector(ls); err != nil {
			return fmt.Errorf("selector of %s: %w", w.ref, err)
		}
	}
	opts := metav1.ListOptions{LabelSelector: sel.String()}
	matches := func(m metav1.Object) bool { return sel.Matches(labels.Set(m.GetLabels())) }
	pods := w.c.CoreV1().Pods(w.ref.Namespace)
	w.pods = &source{what: "the pods of " + w.ref.String(), lw: typedListWatch(pods.List, pods.Watch), opts: opts, keep: matches}
	if w.ref.Kind == workload.Deployment || w.ref.Kind == workload.Rollout {
		rss := w.c.AppsV1().ReplicaSets(w.ref.Namespace)
		w.rs = &source{
			what: "the replicasets of " + w.ref.String(), lw: typedListWatch(rss.List, rss.Watch), opts: opts,
			keep: func(m metav1.Object) bool { return matches(m) && controlledBy(m, uid) },
		}
	}
	w.ownerUID = uid
	return nil
}

// ownedPods are the pods the workload's controllers control, as
// workload.Pods chooses them; nil until the sources have listed.
func (w *watcher) ownedPods() ([]*corev1.Pod, bool) {
	if w.pods == nil || !w.pods.listed || (w.rs != nil && !w.rs.listed) {
		return nil, false
	}
	owners := map[types.UID]bool{w.ownerUID: w.rs == nil}
	if w.rs != nil {
		for _, o := range w.rs.objs {
			if m, err := apimeta.Accessor(o); err == nil {
				owners[m.GetUID()] = true
			}
		}
	}
	var pods []*corev1.Pod
	for _, o := range w.pods.objs {
		if p, ok := o.(*corev1.Pod); ok {
			if c := metav1.GetControllerOf(p); c != nil && owners[c.UID] {
				pods = append(pods, p)
			}
		}
	}
	return pods, true
}

func controlledBy(m metav1.Object, uid types.UID) bool {
	c := metav1.GetControllerOfNoCopy(m)
	return c != nil && c.UID == uid
}

// judge judges the workload as last seen.
func (w *watcher) judge(ctx context.Context, obj runtime.Object, want *int32) (Status, error) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return deployment(o, want), nil
	case *appsv1.StatefulSet:
		return statefulSet(o, want), nil
	case *appsv1.DaemonSet:
		return daemonSet(o), nil
	case *unstructured.Unstructured:
		ro, err := workload.DecodeRollout(o)
		if err != nil {
			return Status{}, err
		}
		return rolloutStatus(ctx, w.c, ro, want)
	}
	return Status{}, fmt.Errorf("%w: %T", errUnsupportedKind, obj)
}

func (w *watcher) rsEvents() <-chan watch.Event {
	if w.rs == nil {
		return nil
	}
	return w.rs.events()
}

func (w *watcher) podEvents() <-chan watch.Event {
	if w.pods == nil {
		return nil
	}
	return w.pods.events()
}
