package main

import (
	"time"

	"github.com/tapd-mirror/tapd-mirror/syncer"
)

// observer connects the engine's hooks to metrics; the zero value does nothing.
type observer struct {
	metrics *metrics
}

func (o observer) tapdAttempt(status, attempt int, took time.Duration) {
	if o.metrics != nil {
		o.metrics.tapdAttempt(status, attempt, took)
	}
}

func (o observer) syncMetrics() syncer.Metrics {
	if o.metrics == nil {
		return nil
	}
	return o.metrics
}
