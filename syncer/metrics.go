package syncer

import "github.com/tapd-mirror/tapd-mirror/storage"

// Metrics receives what the syncer does; the cmd wires Prometheus behind it.
type Metrics interface {
	RunFinished(run storage.SyncRun)
	Records(workspace string, fetched int, res storage.UpsertResult)
	Coverage(workspace string, state storage.SyncState)
}

type nopMetrics struct{}

func (nopMetrics) RunFinished(storage.SyncRun)               {}
func (nopMetrics) Records(string, int, storage.UpsertResult) {}
func (nopMetrics) Coverage(string, storage.SyncState)        {}
