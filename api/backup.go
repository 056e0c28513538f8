package api

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LastBackup is the newest backup of the schedule (serve's backup.dir).
type LastBackup struct {
	At   time.Time // zero: none yet
	Size int64     // bytes
	Full bool
}

// RegisterBackup registers the scheduled backups' metrics, read from last
// at scrape time, and returns the failure counter the schedule counts on.
// Before the first backup, the age runs from since (the process's start),
// so an alert on it fires when backups never work.
func (m *Metrics) RegisterBackup(last func() LastBackup, since time.Time) prometheus.Counter {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tapdmirror_backup_age_seconds",
		Help: "Seconds since the newest backup in backup.dir was taken (since the process started, while there is none)."},
		func() float64 {
			at := last().At
			if at.IsZero() {
				at = since
			}
			return time.Since(at).Seconds()
		}))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tapdmirror_backup_size_bytes",
		Help: "Size of the newest backup in backup.dir (0 while there is none)."},
		func() float64 { return float64(last().Size) }))
	failures := prometheus.NewCounter(prometheus.CounterOpts{Name: "tapdmirror_backup_failures_total",
		Help: "Scheduled backups that failed (retried at the next interval)."})
	m.reg.MustRegister(failures)
	return failures
}
