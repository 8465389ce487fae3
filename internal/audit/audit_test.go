package audit

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keptn-action-provider/action-provider/internal/kube/adapt"
	"github.com/keptn-action-provider/action-provider/internal/workload"
)

func TestRecordWritesAnEventDescribeShows(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	r := New(adapt.Clientset(client), "action-provider-7c9d-xk2p")
	r.now = func() time.Time { return time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC) }
	ref := workload.Ref{Kind: workload.Deployment, Namespace: "sockshop-production", Name: "carts"}
	obj := &metav1.ObjectMeta{UID: "uid-1", ResourceVersion: "42"}

	err := r.Record(ctx, ref, obj, Entry{
		Reason: "Scaled", Action: "scale", Change: "replicas 1 → 3",
		Context: "ctx-1", Trigger: "id-1", Problem: "Response time degradation",
	})
	if err != nil {
		t.Fatal(err)
	}
	list, err := client.CoreV1().Events("sockshop-production").List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("events: %v, %v; want one", list, err)
	}
	ev := list.Items[0]
	if ev.InvolvedObject.Kind != "Deployment" || ev.InvolvedObject.Name != "carts" || ev.InvolvedObject.UID != "uid-1" {
		t.Errorf("involved object %+v", ev.InvolvedObject)
	}
	if ev.Reason != "Scaled" || ev.Type != corev1.EventTypeNormal || ev.Source.Component != Component {
		t.Errorf("reason %q type %q source %q", ev.Reason, ev.Type, ev.Source.Component)
	}
	want := `keptn remediation scale: replicas 1 → 3 (shkeptncontext ctx-1, triggeredid id-1, problem "Response time degradation")`
	if ev.Message != want {
		t.Errorf("message\n got %s\nwant %s", ev.Message, want)
	}
}

func TestMessageIsBounded(t *testing.T) {
	m := Entry{Action: "webhook", Change: strings.Repeat("ü", 2000)}.Message()
	if len(m) > maxMessage || !strings.HasSuffix(m, "…") {
		t.Fatalf("message of %d bytes, suffix %q", len(m), m[len(m)-8:])
	}
}
