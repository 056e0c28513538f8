package config

import (
	"time"
)

// AccessLog configures the access trail (README "For auditors"): who read,
// exported or changed what, recorded in the archive and its integrity log.
type AccessLog struct {
	// ContractReads: "none" (default) leaves the contract's plain list and
	// count out of the trail (automation polls them); "all" records them too.
	ContractReads string `yaml:"contract_reads"`
	// Retention is how long trail entries are kept (default 400d; at least
	// 180d, the Cybersecurity Law's six months). Zero is not allowed:
	// "forever" is written as a long period.
	Retention Period `yaml:"retention"`
}

// The values of access_log.contract_reads.
const (
	ContractReadsNone = "none"
	ContractReadsAll  = "all"
)

// DefaultAccessRetention and MinAccessRetention bound access_log.retention.
const (
	DefaultAccessRetention = 400 * 24 * time.Hour
	MinAccessRetention     = 180 * 24 * time.Hour
)

var defaultAccessLog = AccessLog{ContractReads: ContractReadsNone, Retention: Period{DefaultAccessRetention}}

// RecordContractReads reports whether plain list and count go to the trail.
func (a AccessLog) RecordContractReads() bool { return a.ContractReads == ContractReadsAll }

func accessFields() []Field {
	return []Field{
		strField("access_log.contract_reads", "TAPD_MIRROR_ACCESS_LOG_CONTRACT_READS", false, func(c *Config) *string { return &c.AccessLog.ContractReads }),
		{Key: "access_log.retention", Env: "TAPD_MIRROR_ACCESS_LOG_RETENTION",
			set: func(c *Config, v string) error {
				p, err := ParsePeriod(v)
				c.AccessLog.Retention = p
				return err
			},
			get: func(c *Config) string { return c.AccessLog.Retention.String() }},
	}
}

func (c Config) validateAccessLog(bad func(key, format string, args ...any)) {
	if v := c.AccessLog.ContractReads; v != ContractReadsNone && v != ContractReadsAll {
		bad("access_log.contract_reads", "%q is not none or all", v)
	}
	if p := c.AccessLog.Retention; p.Duration < MinAccessRetention {
		bad("access_log.retention", "%s is shorter than 180 days: the access trail is audit evidence, which the Cybersecurity Law (art. 21) keeps at least six months; the default is 400d", p)
	}
}
