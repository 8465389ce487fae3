package gitops

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/gate"
)

// The record of a suspension, on the owner itself: written in the same
// update as the suspension and removed in the same update as the resume,
// so that the two never disagree, whichever replica dies in between; a
// person reading the owner sees who suspended it and until when. The
// label lets Maintain list them; removing it keeps the owner suspended.
const (
	SuspendedLabel = action.AnnotationPrefix + "gitops-suspended"
	// ResumeAt is when the suspension ends, RFC 3339.
	ResumeAt = action.AnnotationPrefix + "resume-at"
	// ResumeTo is the value the field had, and gets back: "spec.suspend=false".
	ResumeTo = action.AnnotationPrefix + "resume-to"
	// SuspendedBy says which replica suspended it, for which action.
	SuspendedBy = action.AnnotationPrefix + "suspended-by"
)

// undoTimeout bounds the end of a suspension an action did not use: Done's
// context outlives the action's deadline, and has none of its own.
const undoTimeout = 30 * time.Second

// state is an owner's reconciliation, as far as reverting goes.
type state int

const (
	// reverting: a sync will revert a change soon (Flux not suspended,
	// Argo CD with self-heal on): the gate suspends it.
	reverting state = iota
	// ours: suspended by the provider; the gate extends the suspension.
	ours
	// held: suspended by someone else (Flux spec.suspend, Argo CD
	// self-heal off): the gate leaves it alone.
	held
	// manual: an Argo CD Application without automated sync.
	manual
)

// field is the field that suspends an owner.
func field(o *owner) []string {
	if o.argo() {
		return []string{"spec", "syncPolicy", "automated", "selfHeal"}
	}
	return []string{"spec", "suspend"}
}

// stateOf reads obj's reconciliation.
func stateOf(o *owner, obj *unstructured.Unstructured) state {
	if obj.GetLabels()[SuspendedLabel] == "true" {
		return ours
	}
	if !o.argo() {
		if s, _, _ := unstructured.NestedBool(obj.Object, "spec", "suspend"); s {
			return held
		}
		return reverting
	}
	// An automated: {} without selfHeal syncs on a change in Git only;
	// Argo CD v3's automated.enabled: false turns it off.
	auto, ok := automated(obj)
	if !ok {
		return manual
	}
	if enabled, found, _ := unstructured.NestedBool(auto, "enabled"); found && !enabled {
		return manual
	}
	if heal, _, _ := unstructured.NestedBool(auto, "selfHeal"); heal {
		return reverting
	}
	return held
}

// automated is an Application's spec.syncPolicy.automated, if set.
func automated(obj *unstructured.Unstructured) (map[string]any, bool) {
	v, found, err := unstructured.NestedFieldNoCopy(obj.Object, "spec", "syncPolicy", "automated")
	if !found || err != nil {
		return nil, false
	}
	m, ok := v.(map[string]any)
	return m, ok
}

// suspend suspends o until now+suspendFor (or keeps it suspended until
// then, when the provider suspended it already), and admits the action
// with a warning that says so. It changes nothing in a dry run, and
// refuses when it cannot suspend a reverting owner.
func (g *Gate) suspend(ctx context.Context, s gate.Subject, o *owner, from string) (gate.Admission, error) {
	if o.obj == nil {
		return gate.Admission{}, action.Refuse(Rule,
			"%s is managed by %s (%s), which the provider cannot suspend: %v; the gitops policy is suspend (%s): grant the provider get and update on %s, or set guardrails.gitops of entry %q, or the catalog's gitops.policy, to warn or refuse",
			s.Target, o, o.evidence, o.unreach, from, o.gvr.GroupResource(), s.Entry)
	}
	until := g.now().Add(g.settings.SuspendFor).UTC().Truncate(time.Second)
	what := "suspend " + o.String()
	if o.argo() {
		what = "turn off self-heal of " + o.String()
	}
	bound := fmt.Sprintf("%s (gitops.suspendFor %s)", until.Format(time.RFC3339), g.settings.SuspendFor)
	var (
		warning  string
		suspends bool
	)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj := o.obj
		if obj == nil {
			var err error
			if obj, err = g.dyn.Resource(o.gvr).Namespace(o.namespace).Get(ctx, o.name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		o.obj = nil // a retry reads it again
		suspends = false
		switch stateOf(o, obj) {
		case manual:
			warning = fmt.Sprintf("%s (%s) has no automated sync: its next sync, by hand, will revert this", o, o.evidence)
			return nil
		case held:
			warning = fmt.Sprintf("%s (%s) is suspended already, not by the provider: it will revert this once resumed", o, o.evidence)
			if o.argo() {
				warning = fmt.Sprintf("%s (%s) has self-heal off, not by the provider: its next sync will revert this", o, o.evidence)
			}
			return nil
		case ours:
			if at, err := time.Parse(time.RFC3339, obj.GetAnnotations()[ResumeAt]); err == nil && !at.Before(until) {
				warning = fmt.Sprintf("%s is suspended by the provider already, until %s: it will revert this when it resumes, unless Git changes meanwhile", o, at.Format(time.RFC3339))
				return nil
			}
			if s.DryRun {
				warning = fmt.Sprintf("would keep %s suspended until %s", o, bound)
				return nil
			}
			warning = fmt.Sprintf("kept %s suspended until %s: it will revert this when it resumes, unless Git changes meanwhile", o, bound)
		case reverting:
			if s.DryRun {
				warning = fmt.Sprintf("would %s until %s", what, bound)
				return nil
			}
			if err := unstructured.SetNestedField(obj.Object, !o.argo(), field(o)...); err != nil {
				return fmt.Errorf("set %v of %s: %w", field(o), o, err)
			}
			suspends = true
			verb := "suspended " + o.String()
			if o.argo() {
				verb = "turned off self-heal of " + o.String()
			}
			warning = fmt.Sprintf("%s (%s) until %s: it will revert this when it resumes, unless Git changes meanwhile", verb, o.evidence, bound)
			setMark(obj, SuspendedLabel, "true", true)
			setMark(obj, ResumeTo, fmt.Sprintf("%s=%t", strings.Join(field(o), "."), o.argo()), false)
		}
		setMark(obj, ResumeAt, until.Format(time.RFC3339), false)
		setMark(obj, SuspendedBy, fmt.Sprintf("%s for %s of %s (entry %q, triggeredid %s)", g.identity, s.Kind, s.Target, s.Entry, s.Request.TriggeredID), false)
		_, err := g.dyn.Resource(o.gvr).Namespace(o.namespace).Update(ctx, obj, metav1.UpdateOptions{FieldManager: FieldManager})
		return err
	})
	if err != nil {
		return gate.Admission{}, fmt.Errorf("%s: %w", what, err)
	}
	a := gate.Admission{Warning: warning}
	if suspends {
		g.log.WithField("owner", o.String()).WithField("until", until).Infof("gitops: suspended for %s of %s", s.Kind, s.Target)
		// An action that changed nothing needs no suspension: end it now,
		// unless another action has extended it since.
		a.Done = func(ctx context.Context, changed bool) {
			if !changed {
				ctx, cancel := context.WithTimeout(ctx, undoTimeout)
				defer cancel()
				g.resume(ctx, o, until)
			}
		}
	}
	return a, nil
}

// Maintain resumes the suspensions that are due, on every owner the
// provider suspended, whichever replica did. A replica that loses a race
// for one (a conflict) leaves it to the winner.
func (g *Gate) Maintain(ctx context.Context) {
	if g.dyn == nil {
		return
	}
	for _, l := range []struct {
		o          owner
		namespaces []string
	}{
		{owner{gvr: Kustomizations}, []string{metav1.NamespaceAll}},
		{owner{gvr: HelmReleases}, []string{metav1.NamespaceAll}},
		{owner{gvr: Applications}, g.settings.ArgoCDNamespaces},
	} {
		for _, ns := range l.namespaces {
			list, err := g.dyn.Resource(l.o.gvr).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: SuspendedLabel + "=true"})
			if apierrors.IsNotFound(err) {
				continue // the tool is not installed
			}
			if apierrors.IsForbidden(err) {
				// Without list there, no suspension of ours can be there:
				// suspending needs it too. Said every round, it is noise.
				g.log.WithError(err).Debugf("gitops: may not list %s; no suspension of the provider's can be there", l.o.gvr.GroupResource())
				continue
			}
			if err != nil {
				g.log.WithError(err).Warnf("gitops: cannot list the suspended %s to resume them", l.o.gvr.GroupResource())
				continue
			}
			for i := range list.Items {
				o := l.o
				o.namespace, o.name = list.Items[i].GetNamespace(), list.Items[i].GetName()
				g.resumeObject(ctx, &o, &list.Items[i], time.Time{})
			}
		}
	}
}

// resume ends the suspension of o that ends at until, now: undone for an
// action that changed nothing.
func (g *Gate) resume(ctx context.Context, o *owner, until time.Time) {
	obj, err := g.dyn.Resource(o.gvr).Namespace(o.namespace).Get(ctx, o.name, metav1.GetOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			g.log.WithError(err).Warnf("gitops: cannot end the suspension of %s at once; it ends when due", o)
		}
		return
	}
	g.resumeObject(ctx, o, obj, until)
}

// resumeObject resumes obj when it is due, or at once when its suspension
// ends at only (a non-zero only); anything else is left as it is. The
// update carries obj's resourceVersion: what changed since it was read
// is the next round's to judge.
func (g *Gate) resumeObject(ctx context.Context, o *owner, obj *unstructured.Unstructured, only time.Time) {
	if obj.GetLabels()[SuspendedLabel] != "true" {
		return
	}
	at, err := time.Parse(time.RFC3339, obj.GetAnnotations()[ResumeAt])
	switch {
	case !only.IsZero() && (err != nil || !at.Equal(only)):
		return
	case only.IsZero() && err == nil && g.now().Before(at):
		return
	}
	due := obj.GetAnnotations()[ResumeAt]
	// A person may have resumed it, or removed automated sync, meanwhile:
	// only a suspension that is still there is undone.
	if o.argo() {
		if auto, ok := automated(obj); ok {
			auto["selfHeal"] = true
		}
	} else if s, _, _ := unstructured.NestedBool(obj.Object, "spec", "suspend"); s {
		_ = unstructured.SetNestedField(obj.Object, false, "spec", "suspend")
	}
	for _, k := range []string{ResumeAt, ResumeTo, SuspendedBy} {
		setMark(obj, k, "", false)
	}
	setMark(obj, SuspendedLabel, "", true)
	_, err = g.dyn.Resource(o.gvr).Namespace(o.namespace).Update(ctx, obj, metav1.UpdateOptions{FieldManager: FieldManager})
	switch {
	case err == nil:
		g.log.WithField("owner", o.String()).Infof("gitops: resumed %s, suspended until %s", o, due)
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		// Changed or gone since it was read: the next round sees it anew.
	default:
		g.log.WithError(err).Warnf("gitops: cannot resume %s; the next round tries again", o)
	}
}

// setMark sets (or, with an empty value, removes) an annotation or label.
func setMark(obj *unstructured.Unstructured, key, value string, label bool) {
	get, set := obj.GetAnnotations, obj.SetAnnotations
	if label {
		get, set = obj.GetLabels, obj.SetLabels
	}
	m := get()
	if value == "" {
		if _, ok := m[key]; !ok {
			return
		}
		delete(m, key)
	} else {
		if m == nil {
			m = map[string]string{}
		}
		m[key] = value
	}
	set(m)
}
