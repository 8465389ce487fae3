// Package integration tests the action-provider against a real Kubernetes
// control plane (test/controlplane): the scale action called directly, and
// the built binary end to end, from an action.triggered POST to the
// finished event and the replicas the API server reports.
//
// The tests find the control plane through CONTROLPLANE_ENV, the path of
// the env file `controlplane.sh start DIR` writes (DIR/env). Without it they
// skip; with it set and the cluster unreachable they fail. `make test` starts
// a control plane, runs every test with CONTROLPLANE_ENV set, and stops it:
//
//	make test
//
// or by hand:
//
//	test/controlplane/controlplane.sh start /tmp/cp
//	CONTROLPLANE_ENV=/tmp/cp/env go test -race -count=1 ./test/integration
//	test/controlplane/controlplane.sh stop /tmp/cp
package integration
