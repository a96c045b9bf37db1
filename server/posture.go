package server

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/palisade-im/palisade/server/config"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Warning is one setting that weakens compliance: not an error (the
// server runs), but an officer should know. check-config prints each,
// start-up writes them in one compliance_posture audit event, and /healthz
// lists them under "warnings".
type Warning struct {
	// Code names the warning, stable for monitoring.
	Code string `json:"code"`
	// Text says what is weak and how to fix it.
	Text string `json:"text"`
}

// MarshalLogObject implements zapcore.ObjectMarshaler.
func (w Warning) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("code", w.Code)
	enc.AddString("text", w.Text)
	return nil
}

// warnings is a list of Warning for zap.Array.
type warnings []Warning

func (ws warnings) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for _, w := range ws {
		if err := enc.AppendObject(w); err != nil {
			return err
		}
	}
	return nil
}

// Warning codes.
const (
	WarnArchiveOff        = "archive_off"
	WarnNoRetention       = "no_retention_policy"
	WarnRetentionUnlocked = "retention_not_locked"
	WarnNoOfficerKeys     = "no_officer_keys"
	WarnRegistrationOpen  = "registration_open"
	WarnSelfSigned        = "self_signed_certificate"
	WarnNoWitness         = "no_witness"
	WarnCheckpointsLocal  = "checkpoints_local_only"
	WarnAuditStderrOnly   = "audit_stderr_only"
	// WarnPartnerDialback: a [[federation.partner]] may authenticate by
	// XEP-0220 dialback (one warning per such partner).
	WarnPartnerDialback = "partner_dialback"
)

// RegistrationOpener is a module configuration that can open in-band
// account creation (modules/register).
type RegistrationOpener interface {
	RegistrationOpen() bool
}

// Posture lists what in cfg weakens compliance, reading the configured
// certificate file (none configured: the generated development
// certificate).
func Posture(cfg *config.Config) []Warning {
	var leaf *x509.Certificate
	if cfg.TLS.CertFile != "" {
		leaf = readLeaf(cfg.TLS.CertFile)
		if leaf == nil {
			// Unreadable: start-up reports it; no guess here.
			return postureOf(cfg, nil, false)
		}
	}
	return postureOf(cfg, leaf, cfg.TLS.CertFile == "")
}

// readLeaf is the first certificate of a PEM file, nil when there is none.
func readLeaf(path string) *x509.Certificate {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil
		}
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil
			}
			return c
		}
	}
}

// selfSigned tells whether c is signed by its own key.
func selfSigned(c *x509.Certificate) bool {
	// CheckSignature, not CheckSignatureFrom: a self-signed leaf need not
	// be marked as a CA.
	return c != nil && bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// isLocalhost tells whether a domain names this machine only.
func isLocalhost(d string) bool {
	return d == "localhost" || strings.HasSuffix(d, ".localhost")
}

// postureOf is Posture with the served certificate's leaf; generated: it
// is the development certificate made under data_dir/certs.
func postureOf(cfg *config.Config, leaf *x509.Certificate, generated bool) []Warning {
	ws := []Warning{}
	add := func(code, format string, args ...any) {
		ws = append(ws, Warning{Code: code, Text: fmt.Sprintf(format, args...)})
	}
	a := cfg.Archive
	if !a.Enabled {
		add(WarnArchiveOff, "the compliance journal is off ([archive] enabled = false): nothing users send is recorded")
	} else {
		switch locked := 0; {
		case len(a.Retention) == 0:
			add(WarnNoRetention, "no [[archive.retention]] policy: no retention period is declared or enforced")
		default:
			for _, p := range a.Retention {
				if p.Locked {
					locked++
				}
			}
			if locked == 0 {
				add(WarnRetentionUnlocked, "no [[archive.retention]] policy is locked: an administrator can shorten or remove retention by editing the file")
			}
		}
		if len(a.OfficerKeys) == 0 {
			add(WarnNoOfficerKeys, "archive.officer_keys is empty: record content is stored unencrypted, readable by whoever can read the journal files")
		}
		if len(a.Witnesses) == 0 {
			add(WarnNoWitness, "no [[archive.witness]]: nobody outside this server cosigns its checkpoints, so history could be rewritten and signed again")
		}
		if a.CheckpointSyslog == "" && len(a.CheckpointURLs) == 0 && len(a.Witnesses) == 0 {
			add(WarnCheckpointsLocal, "checkpoints go only to archive.checkpoint_dir on this host: set checkpoint_syslog, checkpoint_urls or a witness so that they leave it")
		}
	}
	if sec, ok := cfg.Modules["register"]; ok {
		if r, ok := sec.Value.(RegistrationOpener); ok && r.RegistrationOpen() {
			add(WarnRegistrationOpen, "in-band registration is open ([modules.register] allow = true): anyone who reaches the server can create an account")
		}
	}
	var public []string
	for _, d := range cfg.Server.Domains {
		if !isLocalhost(d) {
			public = append(public, d)
		}
	}
	if len(public) > 0 && (generated || selfSigned(leaf)) {
		what := "the TLS certificate (" + cfg.TLS.CertFile + ") is self-signed"
		if generated {
			what = "no [tls] certificate is configured: the generated self-signed development certificate is served"
		}
		add(WarnSelfSigned, "%s for %s: clients cannot authenticate the server", what, strings.Join(public, ", "))
	}
	if cfg.Log.AuditFile == "" && cfg.Log.AuditSyslog == "" {
		add(WarnAuditStderrOnly, "audit events go to stderr only: set [log] audit_file or audit_syslog to keep them")
	}
	// A partner without ca_file or spki_pins is verified against the
	// system roots: no warning. Dialback proves only control of DNS.
	for _, p := range cfg.Federation.Partners {
		if p.Dialback {
			add(WarnPartnerDialback, "partner %s accepts dialback: its identity rests on DNS (%s), not on a certificate; set dialback = false once its certificate verifies",
				p.Name, strings.Join(p.Domains, ", "))
		}
	}
	return ws
}

// Posture returns what weakens this server's compliance (see Warning).
func (s *Server) Posture() []Warning { return slices.Clone(s.posture) }

// auditPosture writes the compliance_posture audit event: every warning,
// at warn level when there is one.
func (s *Server) auditPosture() {
	codes := make([]string, 0, len(s.posture))
	for _, w := range s.posture {
		codes = append(codes, w.Code)
	}
	fields := []zap.Field{zap.Int("count", len(s.posture)), zap.Strings("codes", codes), zap.Array("warnings", warnings(s.posture))}
	if len(s.posture) > 0 {
		s.audit.Warn("compliance_posture", fields...)
		return
	}
	s.audit.Info("compliance_posture", fields...)
}
