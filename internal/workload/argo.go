package workload

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Rollout is Argo Rollouts' workload (argoproj.io/v1alpha1), reached
// through the dynamic client: the provider does not depend on Argo's types.
const Rollout Kind = "Rollout"

// RolloutGroup and RolloutAPIVersion spell Argo Rollouts' API group.
const (
	RolloutGroup      = "argoproj.io"
	RolloutAPIVersion = RolloutGroup + "/v1alpha1"
)

// RolloutResource is the resource of a Rollout for the dynamic client.
func RolloutResource() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: RolloutGroup, Version: "v1alpha1", Resource: "rollouts"}
}

// Group is the API group of a workload kind: "apps", or "argoproj.io" for a
// Rollout.
func (k Kind) Group() string {
	if k == Rollout {
		return RolloutGroup
	}
	return "apps"
}

// APIVersion is the apiVersion objects of the kind are written with.
func (k Kind) APIVersion() string {
	if k == Rollout {
		return RolloutAPIVersion
	}
	return "apps/v1"
}

// ErrNoDynamic is the answer for a Rollout where there is no dynamic client
// (lint, or a caller that passed none).
var ErrNoDynamic = errors.New("no client for Argo Rollouts here")

// ArgoRollout is what the actions read of an Argo Rollout, decoded from the
// unstructured object; the field names are Argo Rollouts' own.
type ArgoRollout struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              ArgoRolloutSpec   `json:"spec"`
	Status            ArgoRolloutStatus `json:"status"`
}

// ArgoRolloutSpec is the part of a Rollout's spec the actions read.
type ArgoRolloutSpec struct {
	Replicas  *int32                  `json:"replicas,omitempty"`
	Paused    bool                    `json:"paused,omitempty"`
	RestartAt *metav1.Time            `json:"restartAt,omitempty"`
	Template  *corev1.PodTemplateSpec `json:"template,omitempty"`
	// WorkloadRef names the Deployment whose template the Rollout uses
	// instead of its own.
	WorkloadRef *struct {
		Kind string `json:"kind,omitempty"`
		Name string `json:"name,omitempty"`
	} `json:"workloadRef,omitempty"`
}

// ArgoRolloutStatus is the part of a Rollout's status the actions read.
type ArgoRolloutStatus struct {
	Abort     bool         `json:"abort,omitempty"`
	AbortedAt *metav1.Time `json:"abortedAt,omitempty"`
	// CurrentPodHash is the pod-template-hash of spec.template, StableRS
	// that of the ReplicaSet that last rolled out completely: they differ
	// while an update is in progress.
	CurrentPodHash    string `json:"currentPodHash,omitempty"`
	StableRS          string `json:"stableRS,omitempty"`
	Replicas          int32  `json:"replicas,omitempty"`
	UpdatedReplicas   int32  `json:"updatedReplicas,omitempty"`
	ReadyReplicas     int32  `json:"readyReplicas,omitempty"`
	AvailableReplicas int32  `json:"availableReplicas,omitempty"`
	// ObservedGeneration is a string in Argo Rollouts (it held a hash
	// before v0.10).
	ObservedGeneration string `json:"observedGeneration,omitempty"`
	ControllerPause    bool   `json:"controllerPause,omitempty"`
	PauseConditions    []struct {
		Reason string `json:"reason,omitempty"`
	} `json:"pauseConditions,omitempty"`
	// Phase is Healthy, Progressing, Paused or Degraded, Message why.
	Phase   string `json:"phase,omitempty"`
	Message string `json:"message,omitempty"`
}

// ReplicaSetName is the name Argo Rollouts gives the ReplicaSet of a pod
// template hash, as a Deployment does: "<rollout>-<hash>".
func (r *ArgoRollout) ReplicaSetName(hash string) string { return r.Name + "-" + hash }

// GetRollout reads the Rollout ref names: the object as it is (for its
// metadata and for writes) and its decoded fields. API errors come back
// unwrapped.
func GetRollout(ctx context.Context, dyn dynamic.Interface, ref Ref) (*unstructured.Unstructured, *ArgoRollout, error) {
	if dyn == nil {
		return nil, nil, ErrNoDynamic
	}
	u, err := dyn.Resource(RolloutResource()).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	ro, err := DecodeRollout(u)
	if err != nil {
		return nil, nil, err
	}
	return u, ro, nil
}

// DecodeRollout reads the fields of ArgoRollout from u.
func DecodeRollout(u *unstructured.Unstructured) (*ArgoRollout, error) {
	var ro ArgoRollout
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ro); err != nil {
		return nil, fmt.Errorf("read rollout %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return &ro, nil
}
