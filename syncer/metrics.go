package syncer

import "github.com/tapd-mirror/tapd-mirror/storage"

// Metrics receives what the syncer does; the cmd wires Prometheus behind it.
type Metrics interface {
	RunFinished(run storage.SyncRun)
	Records(workspace string, fetched int, res storage.UpsertResult)
	// StartFailed counts a run that could not even start (database down,
	// lease error, project list unavailable): never silence.
	StartFailed(workspace, reason string)
}

type nopMetrics struct{}

func (nopMetrics) RunFinished(storage.SyncRun)               {}
func (nopMetrics) Records(string, int, storage.UpsertResult) {}
func (nopMetrics) StartFailed(string, string)                {}
