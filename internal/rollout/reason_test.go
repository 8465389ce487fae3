package rollout

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"

	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
)

func TestPodReason(t *testing.T) {
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want string
		rank int
	}{
		{
			name: "ready",
			pod:  newPod("carts-7d9f-abcde"),
			want: "",
		},
		{
			name: "image cannot be pulled",
			pod:  newPod("p", waiting(0, "ImagePullBackOff", `Back-off pulling image "docker.io/keptnexamples/carts:0.13.3"`)),
			want: `ImagePullBackOff (Back-off pulling image "docker.io/keptnexamples/carts:0.13.3")`,
		},
		{
			name: "image pull error",
			pod:  newPod("p", waiting(0, "ErrImagePull", `rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/keptnexamples/carts:0.13.9": not found`)),
			want: `ErrImagePull (rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/keptnexamples/carts:0.13.9": not found)`,
		},
		{
			name: "crash loop says how the container died",
			pod: newPod("p", waiting(0, "CrashLoopBackOff", "back-off 5m0s restarting failed container=carts pod=p_sockshop-production(uid-p)"),
				lastExit(0, "OOMKilled", 137, "")),
			want: "CrashLoopBackOff (last exit: OOMKilled, exit code 137)",
		},
		{
			name: "crash loop with the container's last words",
			pod: newPod("p", waiting(0, "CrashLoopBackOff", "back-off 10s restarting failed container"),
				lastExit(0, "Error", 1, "panic: connect to carts-db:27017: connection refused\n\ngoroutine 1 [running]:\nmain.main()")),
			want: "CrashLoopBackOff (last exit: Error, exit code 1: panic: connect to carts-db:27017: connection refused goroutine 1 [running]: main.main())",
		},
		{
			name: "crash loop without a last state keeps the back-off message",
			pod:  newPod("p", waiting(0, "CrashLoopBackOff", "back-off 10s restarting failed container=carts")),
			want: "CrashLoopBackOff (back-off 10s restarting failed container=carts)",
		},
		{
			name: "bad container config",
			pod:  newPod("p", waiting(0, "CreateContainerConfigError", `secret "carts-db" not found`)),
			want: `CreateContainerConfigError (secret "carts-db" not found)`,
		},
		{
			name: "container terminated",
			pod:  newPod("p", terminated(0, "Error", 2, "")),
			want: "Error (exit code 2)",
		},
		{
			name: "container terminated without a reason",
			pod:  newPod("p", terminated(0, "", 143, "")),
			want: "terminated (exit code 143)",
		},
		{
			name: "a waiting container says more than a terminated one",
			pod:  newPod("p", sidecar("istio-proxy"), terminated(0, "Error", 1, ""), waiting(1, "ImagePullBackOff", "Back-off pulling image")),
			want: `container "istio-proxy": ImagePullBackOff (Back-off pulling image)`,
			rank: rankContainer,
		},
		{
			name: "the failing one of two containers is named",
			pod:  newPod("p", sidecar("istio-proxy"), waiting(0, "CrashLoopBackOff", ""), lastExit(0, "Error", 1, "")),
			want: `container "carts": CrashLoopBackOff (last exit: Error, exit code 1)`,
		},
		{
			name: "init container crash loop, not PodInitializing",
			pod: newPod("p", initContainer("migrate", corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}),
				func(p *corev1.Pod) {
					p.Status.InitContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 3}
				}),
			want: `init container "migrate": CrashLoopBackOff (last exit: Error, exit code 3)`,
		},
		{
			name: "init container failed",
			pod:  newPod("p", initContainer("migrate", corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1, Message: "relation carts missing"}})),
			want: `init container "migrate": Error (exit code 1: relation carts missing)`,
		},
		{
			name: "init container done, main container being created",
			pod: newPod("p", initContainer("migrate", corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}),
				waiting(0, "ContainerCreating", ""), func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }),
			want: `container "carts": ContainerCreating`,
			rank: rankStarting,
		},
		{
			name: "being created",
			pod:  newPod("p", waiting(0, "ContainerCreating", "")),
			want: "ContainerCreating",
			rank: rankStarting,
		},
		{
			name: "unschedulable",
			pod:  newPod("p", unschedulable("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.")),
			want: "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
			rank: rankUnschedulable,
		},
		{
			name: "readiness gate false",
			pod:  newPod("p", gate("example.com/ready", corev1.ConditionFalse)),
			want: "readiness gate example.com/ready is False",
			rank: rankGate,
		},
		{
			name: "readiness gate not reported",
			pod:  newPod("p", gate("example.com/ready", "")),
			want: "readiness gate example.com/ready has not been reported",
			rank: rankGate,
		},
		{
			name: "readiness gate passed, the other is not",
			pod:  newPod("p", gate("example.com/lb", corev1.ConditionTrue), gate("example.com/ready", corev1.ConditionUnknown)),
			want: "readiness gate example.com/ready is Unknown",
			rank: rankGate,
		},
		{
			name: "containers not ready say more than a gate",
			pod:  newPod("p", gate("example.com/ready", corev1.ConditionFalse), containersNotReady),
			want: "not ready: ContainersNotReady (containers with unready status: [carts])",
			rank: rankNotReady,
		},
		{
			name: "running, readiness probe failing",
			pod:  newPod("p", containersNotReady, func(p *corev1.Pod) { p.Status.ContainerStatuses[0].State = running }),
			want: "not ready: ContainersNotReady (containers with unready status: [carts])",
			rank: rankNotReady,
		},
		{
			name: "not ready, no reason given",
			pod: newPod("p", func(p *corev1.Pod) {
				setCondition(p, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse})
			}),
			want: "not ready",
			rank: rankNotReady,
		},
		{
			name: "pending, nothing happened yet",
			pod:  newPod("p", pending),
			want: "Pending",
			rank: rankPending,
		},
		{
			name: "a long message is cut",
			pod:  newPod("p", waiting(0, "CreateContainerError", strings.Repeat("é", 150))),
			want: "CreateContainerError (" + strings.Repeat("é", 98) + "…)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rank, got := podReason(tt.pod)
			if got != tt.want {
				t.Errorf("podReason =\n  %q\nwant\n  %q", got, tt.want)
			}
			if got != "" && rank != tt.rank {
				t.Errorf("rank = %d, want %d", rank, tt.rank)
			}
		})
	}
}

func TestWhy(t *testing.T) {
	pull := waiting(0, "ImagePullBackOff", `Back-off pulling image "carts:0.13.3"`)
	tests := []struct {
		name string
		obj  runtime.Object
		pods []*corev1.Pod
		want string
	}{
		{
			name: "one pod cannot pull its image",
			obj:  deploy(3),
			pods: []*corev1.Pod{newPod("carts-7d9f-aaaaa"), newPod("carts-7d9f-bbbbb"), newPod("carts-7d9f-ccccc", pull)},
			want: `2/3 pods ready; pod carts-7d9f-ccccc: ImagePullBackOff (Back-off pulling image "carts:0.13.3")`,
		},
		{
			name: "the most telling pods first, three at most",
			obj:  deploy(6),
			pods: []*corev1.Pod{
				newPod("carts-7d9f-aaaaa", pending),
				newPod("carts-7d9f-bbbbb", containersNotReady),
				newPod("carts-7d9f-ccccc", unschedulable("0/1 nodes are available: 1 Insufficient memory.")),
				newPod("carts-7d9f-ddddd", pull),
				newPod("carts-7d9f-eeeee", waiting(0, "ContainerCreating", "")),
				newPod("carts-7d9f-fffff"),
			},
			want: `2/3 pods ready; pod carts-7d9f-ddddd: ImagePullBackOff (Back-off pulling image "carts:0.13.3"); ` +
				`pod carts-7d9f-ccccc: Unschedulable: 0/1 nodes are available: 1 Insufficient memory.; ` +
				`pod carts-7d9f-eeeee: ContainerCreating; and 2 more pods not ready`,
		},
		{
			name: "terminating pods are counted, not named",
			obj:  deploy(3),
			pods: []*corev1.Pod{newPod("carts-7d9f-aaaaa"), newPod("carts-7d9f-bbbbb", terminating), newPod("carts-7d9f-ccccc", pull)},
			want: `2/3 pods ready; pod carts-7d9f-ccccc: ImagePullBackOff (Back-off pulling image "carts:0.13.3"); 1 terminating`,
		},
		{
			name: "evicted and stray pods are not the workload's",
			obj:  deploy(3),
			pods: []*corev1.Pod{newPod("carts-7d9f-aaaaa"), newPod("carts-7d9f-old", evicted), newPod("carts-stray", pull, stray)},
			want: `2/3 pods ready`,
		},
		{
			name: "no pods at all",
			obj:  deploy(3),
			want: `2/3 pods ready; no pods`,
		},
		{
			name: "statefulset pods",
			obj:  sts(2),
			pods: []*corev1.Pod{newPod("carts-db-0"), newPod("carts-db-1", waiting(0, "CreateContainerConfigError", `secret "carts-db" not found`))},
			want: `2/3 pods ready; pod carts-db-1: CreateContainerConfigError (secret "carts-db" not found)`,
		},
		{
			name: "daemonset pods",
			obj:  ds(2),
			pods: []*corev1.Pod{newPod("node-exporter-x7k2p", unschedulable("0/3 nodes are available: 3 node(s) didn't have free ports for the requested pod ports."))},
			want: `2/3 pods ready; pod node-exporter-x7k2p: Unschedulable: 0/3 nodes are available: 3 node(s) didn't have free ports for the requested pod ports.`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cluster(t, tt.obj, tt.pods...)
			got := why(context.Background(), adapt.Clientset(c), refOf(t, tt.obj), Status{Ready: 2, Desired: 3})
			if got != tt.want {
				t.Errorf("why =\n  %s\nwant\n  %s", got, tt.want)
			}
		})
	}
}

func TestWhyPodsUnreadable(t *testing.T) {
	c := cluster(t, deploy(3))
	c.PrependReactor("list", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("etcdserver: request timed out")
	})
	got := why(context.Background(), adapt.Clientset(c), refOf(t, deploy(3)), Status{Ready: 0, Desired: 3})
	want := "0/3 pods ready; the pods could not be read: list the pods of deployment sockshop-production/carts: etcdserver: request timed out"
	if got != want {
		t.Errorf("why =\n  %s\nwant\n  %s", got, want)
	}
}

func TestCut(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"0123456789abc", 10, "0123456…"},
		{"ééééé", 8, "éé…"}, // never half a rune: 2+2+3 bytes, not 2+2+1+3
	}
	for _, tt := range tests {
		got := cut(tt.in, tt.n)
		if got != tt.want || len(got) > tt.n || !utf8.ValidString(got) {
			t.Errorf("cut(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
	long := strings.Repeat("pod carts-7d9f-abcde: ImagePullBackOff; ", 100)
	if got := capSummary(long); len(got) > maxSummary || !strings.HasSuffix(got, "…") {
		t.Errorf("capSummary left %d bytes, ending %q", len(got), got[len(got)-10:])
	}
}
