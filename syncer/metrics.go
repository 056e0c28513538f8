package syncer

import "github.com/tapd-mirror/tapd-mirror/storage"

// Metrics receives what the syncer does; the cmd wires Prometheus behind it.
type Metrics interface {
	RunFinished(run storage.SyncRun)
	Records(workspace string, fetched int, res storage.UpsertResult)
}

type nopMetrics struct{}

func (nopMetrics) RunFinished(storage.SyncRun)               {}
func (nopMetrics) Records(string, int, storage.UpsertResult) {}
