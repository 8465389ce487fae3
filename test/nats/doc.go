// Package nats tests the action-provider end to end over a real NATS server,
// the way Keptn 1.x delivers events: a distributor sidecar next to each
// provider replica subscribes to NATS and POSTs every action.triggered event
// to the provider, and publishes what the provider POSTs to its /event
// endpoint back on NATS.
//
// Everything runs as a real process on 127.0.0.1: nats-server v2.10.7 (the
// version Keptn 1.4.5 and its go-utils v0.20.4 pin), and the provider binary,
// built once per test run and started in sandbox mode, so that no cluster is
// needed. The distributor is stood in for by Bridge (bridge_test.go), a small
// type that behaves as distributor 1.4.5 does, one per provider replica as
// there is one sidecar per pod.
//
// The tests find nats-server through NATS_SERVER_BIN, else in
// ~/.cache/action-provider/nats-server-v2.10.7/bin; without it they skip.
// test/nats/nats-server.sh installs it there (go install, ~25 s once) and
// prints its path:
//
//	NATS_SERVER_BIN=$(test/nats/nats-server.sh) go test -race -count=1 ./test/nats
package nats
