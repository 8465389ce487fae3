package main

// The event types and the distributor's payload cap, written out rather
// than imported from internal/keptnevent and internal/eventsink: those pull
// in go-utils, the CloudEvents SDK, zap and OpenTelemetry, whose start-up
// would count in the floor's memory, the floor being this binary.
// events_test.go checks that they agree.
const (
	triggeredType = "sh.keptn.event.action.triggered"
	startedType   = "sh.keptn.event.action.started"
	finishedType  = "sh.keptn.event.action.finished"

	// distributorMaxBytes is the distributor's default payload cap.
	distributorMaxBytes = 64 << 10
)
