package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tapd-mirror/tapd-mirror/config"
)

func TestScopesAreALattice(t *testing.T) {
	// need → the scopes that include it.
	want := map[config.Scope][]config.Scope{
		config.ScopeRead:    {config.ScopeRead, config.ScopeWrite, config.ScopeAuditor, config.ScopeAdmin},
		config.ScopeWrite:   {config.ScopeWrite, config.ScopeAdmin},
		config.ScopeAuditor: {config.ScopeAuditor, config.ScopeAdmin},
		config.ScopeAdmin:   {config.ScopeAdmin},
	}
	all := []config.Scope{config.ScopeRead, config.ScopeWrite, config.ScopeAuditor, config.ScopeAdmin, "root", ""}
	for need, allowed := range want {
		for _, s := range all {
			in := false
			for _, a := range allowed {
				in = in || a == s
			}
			if s.Includes(need) != in {
				t.Errorf("%q.Includes(%q) = %v", s, need, !in)
			}
		}
	}
	if !config.Scope("").Includes("") || config.Scope("root").Valid() || !config.ScopeAuditor.Valid() {
		t.Error("empty or unknown scopes")
	}
}

func TestAccessLogSettings(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := config.Load("", env(nil))
	if err != nil || c.AccessLog.RecordContractReads() || c.AccessLog.Retention.Duration != 400*24*time.Hour || c.Validate() != nil {
		t.Fatalf("defaults: %+v %v %v", c.AccessLog, err, c.Validate())
	}
	c, err = config.Load("", env(map[string]string{"TAPD_MIRROR_ACCESS_LOG_CONTRACT_READS": "all",
		"TAPD_MIRROR_ACCESS_LOG_RETENTION": "365d", "TAPD_MIRROR_AUDITOR_TOKEN": "aud"}))
	if err != nil || !c.AccessLog.RecordContractReads() || c.AccessLog.Retention.Duration != 365*24*time.Hour || c.Validate() != nil {
		t.Fatalf("from env: %+v %v %v", c.AccessLog, err, c.Validate())
	}
	if toks := c.APITokens(); len(toks) != 1 || toks[0].Scope != config.ScopeAuditor || toks[0].Name != "auth.auditor_token" {
		t.Fatalf("auditor token: %+v", toks)
	}
	for v, want := range map[string]string{
		"179d":    "access_log.retention: 179d is shorter than 180 days",
		"forever": "access_log.retention: forever is shorter than 180 days",
	} {
		c, _ := config.Load("", env(map[string]string{"TAPD_MIRROR_ACCESS_LOG_RETENTION": v}))
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "TAPD_MIRROR_ACCESS_LOG_RETENTION") {
			t.Errorf("retention %s: %v", v, err)
		}
	}
	c, _ = config.Load("", env(map[string]string{"TAPD_MIRROR_ACCESS_LOG_CONTRACT_READS": "some"}))
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `access_log.contract_reads: "some" is not none or all`) {
		t.Errorf("contract_reads: %v", err)
	}
}
