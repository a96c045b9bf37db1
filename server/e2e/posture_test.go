package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/palisade-im/palisade/server"
	"github.com/palisade-im/palisade/server/config"
)

type healthBody struct {
	Status   string           `json:"status"`
	Problems string           `json:"problems"`
	Warnings []server.Warning `json:"warnings"`
}

func healthJSON(t *testing.T, e *env) (int, healthBody) {
	t.Helper()
	resp, err := http.Get("http://" + e.cfg.Listen.Admin + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b healthBody
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("/healthz is not JSON: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("/healthz Content-Type %q", ct)
	}
	return resp.StatusCode, b
}

func warningCodes(ws []server.Warning) []string {
	var c []string
	for _, w := range ws {
		c = append(c, w.Code)
	}
	slices.Sort(c)
	return c
}

// TestHealthzPostureWarnings: /healthz lists what weakens compliance under
// "warnings" and stays 200 "ok"; start-up wrote the same list as one
// compliance_posture audit event.
func TestHealthzPostureWarnings(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*config.Config)
		want []string
	}{
		{"defaults", nil, []string{server.WarnAuditStderrOnly, server.WarnCheckpointsLocal, server.WarnNoOfficerKeys,
			server.WarnNoRetention, server.WarnNoWitness}},
		{"archive off, audit file", func(c *config.Config) {
			c.Archive.Enabled = false
			c.Log.AuditFile = c.Server.DataDir + "/audit.log"
		}, []string{server.WarnArchiveOff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, logs := newEnvObserved(t, func(c *config.Config) {
				c.Listen.Admin = freeAddr(t)
				if tc.mod != nil {
					tc.mod(c)
				}
			})
			waitListening(t, e.cfg.Listen.Admin)
			code, b := healthJSON(t, e)
			if code != http.StatusOK || b.Status != "ok" || b.Problems != "" {
				t.Fatalf("/healthz %d %+v, want 200 ok", code, b)
			}
			if got := warningCodes(b.Warnings); !slices.Equal(got, tc.want) {
				t.Errorf("/healthz warnings %v, want %v", got, tc.want)
			}
			for _, w := range b.Warnings {
				if w.Text == "" {
					t.Errorf("warning %s without text", w.Code)
				}
			}
			ev := logs.FilterMessage("compliance_posture").All()
			if len(ev) != 1 {
				t.Fatalf("%d compliance_posture events, want 1", len(ev))
			}
			f := ev[0].ContextMap()
			if ev[0].LoggerName != "audit" || f["audit"] != true || f["count"] != int64(len(tc.want)) {
				t.Errorf("compliance_posture event %s %v", ev[0].LoggerName, f)
			}
			var got []string
			for _, c := range f["codes"].([]any) {
				got = append(got, c.(string))
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("audit event codes %v, want %v", got, tc.want)
			}
		})
	}
}
