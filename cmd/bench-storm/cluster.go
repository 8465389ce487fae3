package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/keptn-action-provider/action-provider/internal/action"
	"github.com/keptn-action-provider/action-provider/internal/action/restart"
)

const (
	// ledgerNamespace is the provider's own (POD_NAMESPACE): its Leases.
	ledgerNamespace = "action-provider-storm"
	serviceAccount  = "action-provider"
	// The provider authenticates as a ServiceAccount, as it does in a pod,
	// so that the API server's priority and fairness treats it as it would
	// there (flow schema service-accounts, priority level workload-low).
	// A flow schema of its own, one step ahead of service-accounts and
	// with the same priority level and distinguisher, changes nothing of
	// that and labels its requests in the API server's metrics: the other
	// clients (controllers, kwok, this tool) use the admin token.
	flowSchema    = "bench-storm-provider"
	priorityLevel = "workload-low"
	// The ledger's labels (internal/ledger): what a Lease records.
	recordLabel = action.AnnotationPrefix + "record"
	stateLabel  = action.AnnotationPrefix + "state"
)

// kube is the control plane, as the admin sees it.
type kube struct {
	cfg    *rest.Config
	client kubernetes.Interface
}

// setUp creates the namespaces, the provider's ServiceAccount (bound to
// cluster-admin: this measures load, not RBAC, which test/deploy.sh
// checks), its flow schema and the Deployments, and waits until every
// Deployment has its pods ready.
func (k kube) setUp(ctx context.Context, p plan, replicas int32) error {
	for _, ns := range []string{targetNamespace, ledgerNamespace} {
		if err := ignoreExists(k.client.CoreV1().Namespaces().Create(ctx,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})); err != nil {
			return fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	if err := ignoreExists(k.client.CoreV1().ServiceAccounts(ledgerNamespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount}}, metav1.CreateOptions{})); err != nil {
		return fmt.Errorf("create service account: %w", err)
	}
	if err := ignoreExists(k.client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-storm-provider"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ledgerNamespace, Name: serviceAccount}},
	}, metav1.CreateOptions{})); err != nil {
		return fmt.Errorf("bind the service account: %w", err)
	}
	if err := ignoreExists(k.client.FlowcontrolV1().FlowSchemas().Create(ctx, &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: flowSchema},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: priorityLevel},
			MatchingPrecedence:         8999, // service-accounts is 9000
			DistinguisherMethod:        &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{
					Kind:           flowcontrolv1.SubjectKindServiceAccount,
					ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Namespace: ledgerNamespace, Name: serviceAccount},
				}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{
					Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"},
					ClusterScope: true, Namespaces: []string{"*"},
				}},
				NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
			}},
		},
	}, metav1.CreateOptions{})); err != nil {
		return fmt.Errorf("create flow schema %s: %w", flowSchema, err)
	}

	zero := int64(0)
	for _, t := range p.targets {
		n := replicas
		labels := map[string]string{"app": t.name}
		_, err := k.client.AppsV1().Deployments(targetNamespace).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: t.name, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: &n,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						// kwok runs no container: the image is never pulled.
						Containers:                    []corev1.Container{{Name: "app", Image: "registry.invalid/" + t.name + ":1"}},
						TerminationGracePeriodSeconds: &zero,
					},
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create deployment %s: %w", t.name, err)
		}
	}
	return k.awaitReady(ctx, len(p.targets))
}

// awaitReady waits until n Deployments of targetNamespace have rolled out.
func (k kube) awaitReady(ctx context.Context, n int) error {
	for {
		list, err := k.client.AppsV1().Deployments(targetNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list deployments: %w", err)
		}
		ready := 0
		for _, d := range list.Items {
			want := *d.Spec.Replicas
			if d.Status.ObservedGeneration == d.Generation && d.Status.UpdatedReplicas == want &&
				d.Status.ReadyReplicas == want && d.Status.Replicas == want {
				ready++
			}
		}
		if ready == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d deployments ready: %w", ready, n, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// providerKubeconfig writes a kubeconfig into dir with a token of the
// provider's ServiceAccount.
func (k kube) providerKubeconfig(ctx context.Context, dir string) (string, error) {
	hour := int64(3600)
	tr, err := k.client.CoreV1().ServiceAccounts(ledgerNamespace).CreateToken(ctx, serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &hour}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token of the service account: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["storm"] = &clientcmdapi.Cluster{Server: k.cfg.Host, CertificateAuthorityData: k.cfg.CAData, CertificateAuthority: k.cfg.CAFile}
	cfg.AuthInfos["provider"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["storm"] = &clientcmdapi.Context{Cluster: "storm", AuthInfo: "provider", Namespace: ledgerNamespace}
	cfg.CurrentContext = "storm"
	path := filepath.Join(dir, "provider.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}

// targetState is what the API server says of one Deployment after the storm.
type targetState struct {
	replicas    int32
	restartedAt string // the pod template's restart annotation
}

func (k kube) targetStates(ctx context.Context) (map[string]targetState, error) {
	list, err := k.client.AppsV1().Deployments(targetNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	out := map[string]targetState{}
	for _, d := range list.Items {
		out[d.Name] = targetState{replicas: *d.Spec.Replicas, restartedAt: d.Spec.Template.Annotations[restart.Annotation]}
	}
	return out, nil
}

// ledgerState counts the provider's event records by state, and the
// targets' Leases still held by an action.
func (k kube) ledgerState(ctx context.Context) (events map[string]int, held []string, err error) {
	list, err := k.client.CoordinationV1().Leases(ledgerNamespace).List(ctx, metav1.ListOptions{LabelSelector: recordLabel})
	if err != nil {
		return nil, nil, fmt.Errorf("list the ledger's leases: %w", err)
	}
	events = map[string]int{}
	for _, l := range list.Items {
		switch l.Labels[recordLabel] {
		case "event":
			events[l.Labels[stateLabel]]++
		case "target":
			if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
				held = append(held, l.Name)
			}
		}
	}
	return events, held, nil
}

// beat is one renewal of the provider's heartbeat Lease: the renewTime it
// wrote, and when this tool saw the write land.
type beat struct {
	renew time.Time
	seen  time.Time
	added bool // from the watch's initial listing: seen says nothing
}

// heartbeats follows the provider's heartbeat Lease with a watch.
type heartbeats struct {
	mu    sync.Mutex
	beats []beat
	done  chan struct{}
}

// watchHeartbeats watches the ledger namespace's heartbeat Leases until
// ctx ends; wait for done after cancelling it.
func (k kube) watchHeartbeats(ctx context.Context) *heartbeats {
	h := &heartbeats{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		last := map[string]time.Time{}
		for ctx.Err() == nil {
			w, err := k.client.CoordinationV1().Leases(ledgerNamespace).Watch(ctx, metav1.ListOptions{LabelSelector: recordLabel + "=replica"})
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
				continue
			}
			for ev := range w.ResultChan() {
				now := time.Now()
				lease, ok := ev.Object.(*coordinationv1.Lease)
				if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) || lease.Spec.RenewTime == nil {
					continue
				}
				renew := lease.Spec.RenewTime.Time
				if renew.Equal(last[lease.Name]) {
					continue
				}
				last[lease.Name] = renew
				h.mu.Lock()
				h.beats = append(h.beats, beat{renew: renew, seen: now, added: ev.Type == watch.Added})
				h.mu.Unlock()
			}
			w.Stop()
		}
	}()
	return h
}

func (h *heartbeats) all() []beat {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]beat(nil), h.beats...)
}

func ignoreExists[T any](_ T, err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
