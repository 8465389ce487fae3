package keda

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// Unpauser ends the provider's pauses of KEDA ScaledObjects once they are
// due. It is a gate.Maintainer: every replica calls Maintain every
// HEARTBEAT_PERIOD, so a pause ends within a period of its bound even when
// the replica that set it is gone. Replicas racing for one pause are kept
// apart by the resourceVersion each write carries: the loser gets a
// Conflict and leaves it.
type Unpauser struct {
	// Dynamic reaches the ScaledObjects; nil makes Maintain do nothing.
	Dynamic dynamic.Interface
	// Namespaces are where to look for pauses; empty means every namespace
	// at once, which needs permission to list ScaledObjects cluster-wide.
	Namespaces []string
	// Log receives what was unpaused and what could not be; nil discards.
	Log logrus.FieldLogger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Maintain unpauses every ScaledObject whose pause by the provider is due.
// A pause someone changed since (paused-replicas is no longer the count
// the provider set) is theirs: only the provider's marks are removed.
func (u *Unpauser) Maintain(ctx context.Context) {
	if u.Dynamic == nil {
		return
	}
	namespaces := u.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, ns := range namespaces {
		list, err := u.Dynamic.Resource(Resource()).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: Label + "=true"})
		if apierrors.IsNotFound(err) {
			return // KEDA is not installed
		}
		if apierrors.IsForbidden(err) {
			// scale needs list there to pause anything: no pause of ours
			// can be there. Said every round, it is noise.
			u.log().WithError(err).WithField("namespace", ns).Debug("keda: may not list ScaledObjects here; no pause of the provider's can be here")
			continue
		}
		if err != nil {
			u.log().WithError(err).WithField("namespace", ns).Warn("keda: cannot list the paused ScaledObjects to unpause the due ones")
			continue
		}
		for i := range list.Items {
			u.unpause(ctx, &list.Items[i])
		}
	}
}

// unpause ends the pause of obj if it is due. An unreadable bound counts as
// due: a pause must not outlive its bound because the bound was garbled.
func (u *Unpauser) unpause(ctx context.Context, obj *unstructured.Unstructured) {
	a := obj.GetAnnotations()
	until, err := time.Parse(time.RFC3339, a[UnpauseAt])
	if err == nil && u.now().Before(until) {
		return
	}
	name := "KEDA ScaledObject " + obj.GetNamespace() + "/" + obj.GetName()
	log := u.log().WithField("scaledobject", obj.GetNamespace()+"/"+obj.GetName()).WithField("until", a[UnpauseAt])
	value, paused := a[PausedReplicasAnnotation]
	ours := paused && value == a[Replicas]
	annotations := map[string]any{UnpauseAt: nil, Replicas: nil}
	if ours {
		annotations[PausedReplicasAnnotation] = nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": obj.GetResourceVersion(),
		"labels":          map[string]any{Label: nil},
		"annotations":     annotations,
	}})
	if err != nil {
		log.WithError(err).Warn("keda: cannot unpause " + name)
		return
	}
	_, err = u.Dynamic.Resource(Resource()).Namespace(obj.GetNamespace()).Patch(ctx, obj.GetName(), types.MergePatchType, patch, metav1.PatchOptions{})
	switch {
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		// Another replica unpaused it, it changed, or it is gone: the
		// next round judges what is there.
		log.WithError(err).Debug("keda: left " + name + " to the next round")
	case err != nil:
		log.WithError(err).Warn("keda: cannot unpause " + name + "; trying again next round")
	case ours:
		log.Infof("keda: unpaused %s (paused at %s replicas until %s): KEDA autoscales its target again", name, value, a[UnpauseAt])
	case paused:
		log.Infof("keda: the pause of %s was changed by someone else (%s %q, the provider set %q): left as it is, only the provider's marks removed",
			name, PausedReplicasAnnotation, value, a[Replicas])
	default:
		log.Infof("keda: %s was unpaused by someone else before its bound; the provider's marks removed", name)
	}
}

func (u *Unpauser) now() time.Time {
	if u.Now == nil {
		return time.Now()
	}
	return u.Now()
}

func (u *Unpauser) log() logrus.FieldLogger {
	if u.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		return l
	}
	return u.Log
}

// String names the pause for messages: "3 replicas until 2024-05-01T10:30:00Z".
func (p Pause) String() string {
	return fmt.Sprintf("%d replicas until %s", p.Replicas, p.Until.UTC().Format(time.RFC3339))
}
