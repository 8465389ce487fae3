package keda

import (
	"context"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
)

// A namespace where the provider may not list ScaledObjects holds no
// pause of its own: Maintain passes it by without a warning every round.
func TestMaintainPassesForbiddenNamespacesQuietly(t *testing.T) {
	dyn := newDynamic()
	dyn.PrependReactor("list", "scaledobjects", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(Resource().GroupResource(), "", nil)
	})
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	(&Unpauser{Dynamic: dyn, Namespaces: []string{"batch-ops"}, Log: log}).Maintain(context.Background())
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.WarnLevel {
			t.Errorf("logged at %s: %s", e.Level, e.Message)
		}
	}
	if len(hook.AllEntries()) != 1 {
		t.Errorf("%d log lines, want one at debug", len(hook.AllEntries()))
	}
}
