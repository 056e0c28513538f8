package config

import "time"

// Backup configures the backups serve takes on a schedule (tapd-mirror
// backup by hand): into Dir, a full backup every FullInterval and an
// incremental one every Interval in between, keeping the newest Keep full
// backups with their incrementals. No Dir: no scheduled backups.
type Backup struct {
	Dir          string   `yaml:"dir"`
	Interval     Duration `yaml:"interval"`
	FullInterval Duration `yaml:"full_interval"`
	Keep         int      `yaml:"keep"`
}

// defaultBackup is the documented shape: incremental daily, full weekly,
// four weeks kept.
var defaultBackup = Backup{Interval: Duration{24 * time.Hour}, FullInterval: Duration{7 * 24 * time.Hour}, Keep: 4}

func (c Config) validateBackup(bad func(key, format string, args ...any)) {
	b := c.Backup
	if b.Interval.Duration < time.Minute {
		bad("backup.interval", "%s is too short (at least 1m)", b.Interval)
	}
	if b.FullInterval.Duration < b.Interval.Duration {
		bad("backup.full_interval", "%s is shorter than backup.interval %s", b.FullInterval, b.Interval)
	}
	if b.Keep < 1 {
		bad("backup.keep", "%d: keep at least 1 full backup", b.Keep)
	}
}
