package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
)

// Administrative acts recorded as storage.KindAdmin records (DECISIONS.md
// "What the journal records"). Holds, exports, searches and purges have
// kinds of their own.
const (
	ActUserAdd     = "user_add"
	ActUserDel     = "user_del"
	ActUserPasswd  = "user_passwd"
	ActGroupAdd    = "group_add"
	ActGroupRemove = "group_remove"
	ActKick        = "kick"
	ActUnlock      = "unlock"
	// ActConfig is the configuration's digest at a server start.
	ActConfig = "config"
	// ActCheckpoint is a checkpoint requested (before an export) while
	// the server's view of the journal lagged another process's appends.
	ActCheckpoint = "checkpoint_requested"
)

// AdminAct is the content (JSON) of a storage.KindAdmin record: what was
// done (Act), by whom (Actor: "cli:USER", "xep-0077:JID", "admin-http",
// "server"), to what (Target, a JID or a file), details, and when
// (RFC 3339, UTC).
type AdminAct struct {
	Act     string            `json:"act"`
	Actor   string            `json:"actor"`
	Target  string            `json:"target,omitempty"`
	Details map[string]string `json:"details,omitempty"`
	Time    string            `json:"time"`
}

// RecordAdmin appends a's record (kind admin) to the journal: the record's
// from is the actor, its to the target, so that `archive search --user`
// finds the acts on an account. It returns the record's seq once durable.
//
// Several processes may append to one journal (storage/sqlite: each commit
// takes the record log's append lock and starts from the size on disk),
// so the CLI records its acts directly, as it does holds and exports,
// whether a server runs or not.
func RecordAdmin(ctx context.Context, j storage.Journal, a AdminAct) (int64, error) {
	now := time.Now()
	if a.Time == "" {
		a.Time = now.UTC().Format(time.RFC3339Nano)
	}
	if a.Act == "" || a.Actor == "" {
		return 0, errors.New("archive: an administrative act needs an act and an actor")
	}
	content, err := json.Marshal(a)
	if err != nil {
		return 0, err
	}
	data, err := appendRecord(nil, now, string(storage.DirLocal), string(storage.KindAdmin), a.Actor, a.Target, "", "", content)
	if err != nil {
		return 0, err
	}
	recs := []storage.JournalRecord{{Time: now, Direction: storage.DirLocal, Kind: storage.KindAdmin, From: a.Actor, To: a.Target,
		StanzaSize: len(content), Data: data}}
	if err := j.Append(ctx, recs); err != nil {
		return 0, fmt.Errorf("archive: journal admin record: %w", err)
	}
	return recs[0].Seq, nil
}

// RecordAdminAct journals an administrative act done inside the server
// (an in-band account change, a kick, an unlock). Modules find it by
// interface:
//
//	interface{ RecordAdminAct(ctx, act, actor, target string, details map[string]string) error }
func (m *Module) RecordAdminAct(ctx context.Context, act, actor, target string, details map[string]string) error {
	_, err := RecordAdmin(ctx, m.j, AdminAct{Act: act, Actor: actor, Target: target, Details: details})
	return err
}

// ConfigAct describes the configuration a server starts with: the
// SHA-256 of the configuration document as it was parsed (of the embedded
// default's effective settings, as JSON, without one) and the build's
// version. The digest is of the bytes decoded, not of the file read again,
// so it is what the server runs with even if the file changed since.
func ConfigAct(cfg *config.Config, version string) (AdminAct, error) {
	a := AdminAct{Act: ActConfig, Actor: "server", Details: map[string]string{"version": version}}
	if cfg.SHA256 != "" {
		a.Target, a.Details["source"], a.Details["sha256"] = cfg.Path, "file", cfg.SHA256
		return a, nil
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return a, fmt.Errorf("archive: configuration digest: %w", err)
	}
	sum := sha256.Sum256(b)
	a.Target = "embedded default"
	a.Details["source"] = "embedded default (effective settings as JSON)"
	a.Details["sha256"] = hex.EncodeToString(sum[:])
	return a, nil
}

// BuildVersion is the version of this build as the Go toolchain recorded
// it: the main module's version, and the VCS revision when known.
func BuildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v += " (modified)"
			}
		}
	}
	return v
}

// CheckpointNow issues a checkpoint of everything journaled (when the
// journal grew since the last one), publishes it to the sinks as the timer
// would, and returns the latest checkpoint: what an export run now is
// proven against (POST /archive/checkpoint). atLeast is the journal's size
// as the requester read it from disk: when the module's tree head is
// smaller, another process (the CLI) appended since the module's last
// append, and the request is first recorded (an admin act by actor),
// which makes the journal's writer read the log's size from disk, so the
// checkpoint covers those records too. A journal that did not grow keeps
// its latest checkpoint, with the witnesses' cosignatures it has.
func (m *Module) CheckpointNow(ctx context.Context, actor string, atLeast int64) (storage.Checkpoint, error) {
	head, err := m.j.TreeHead(ctx)
	if err != nil {
		return storage.Checkpoint{}, fmt.Errorf("archive: %w", err)
	}
	if head.Size < atLeast {
		if _, err := RecordAdmin(ctx, m.j, AdminAct{Act: ActCheckpoint, Actor: actor,
			Details: map[string]string{"reason": "records appended by another process since the server's last append"}}); err != nil {
			return storage.Checkpoint{}, err
		}
	}
	if err := m.Checkpoint(ctx); err != nil {
		return storage.Checkpoint{}, err
	}
	return latestCheckpoint(ctx, m.j)
}

func latestCheckpoint(ctx context.Context, j storage.Journal) (storage.Checkpoint, error) {
	cps, err := j.Checkpoints(ctx)
	if err != nil {
		return storage.Checkpoint{}, fmt.Errorf("archive: %w", err)
	}
	if len(cps) == 0 {
		return storage.Checkpoint{}, errors.New("archive: the journal is empty: nothing to checkpoint")
	}
	return cps[len(cps)-1], nil
}

// IssueCheckpoint is CheckpointNow for a journal no server has open (the
// CLI, with the server stopped): it signs the journal's tree head with the
// signing key of data_dir, keeps the checkpoint in the journal and
// publishes it to cfg's sinks, as the server would. Witnesses are asked at
// the server's next start (it submits the latest checkpoint).
func IssueCheckpoint(ctx context.Context, cfg *config.Config, j storage.Journal, actor string, log, audit *zap.Logger) (storage.Checkpoint, error) {
	f := Paths(cfg)
	if _, err := os.Stat(f.SigningKey); err != nil {
		return storage.Checkpoint{}, fmt.Errorf("archive: no signing key at %s (the server creates it when it first starts with the archive on)", f.SigningKey)
	}
	signer, err := LoadOrCreateKey(f.SigningKey, KeyName(cfg))
	if err != nil {
		return storage.Checkpoint{}, err
	}
	m := New(j, signer, Sinks(cfg), localFunc(func(string) bool { return false }), time.Hour, log, audit)
	if cps, err := j.Checkpoints(ctx); err != nil {
		return storage.Checkpoint{}, fmt.Errorf("archive: %w", err)
	} else if len(cps) > 0 {
		m.lastSize = cps[len(cps)-1].Size
	}
	return m.CheckpointNow(ctx, actor, 0)
}

// localFunc adapts a function to Localer.
type localFunc func(domain string) bool

func (f localFunc) IsLocal(domain string) bool { return f(domain) }
