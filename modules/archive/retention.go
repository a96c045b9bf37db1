package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/palisade-im/palisade/server/config"
	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
	"mellium.im/xmpp/jid"
)

// Retention: each record of kind message or subscription is kept for the
// longest keep_days of the [[archive.retention]] policies that apply to its
// sender or its recipient (bare JIDs); a record no policy applies to is
// kept forever. Records the archive writes about itself (export, hold,
// disposition, search, policy) are never purged. Past retention, a record
// is purged unless an active legal hold covers a party of it at its time.

// keepFor returns the longest keep of the policies that apply to any of
// the parties (bare JIDs), and that policy's name; 0 when none applies.
// members are the groups each account was ever seen in.
func keepFor(ps []config.Retention, members map[string][]string, parties ...string) (days int, name string) {
	return config.KeepFor(ps, func(bare string) []string { return members[bare] }, parties...)
}

// groupScoped reports whether a policy has scope "groups".
func groupScoped(ps []config.Retention) bool {
	return slices.ContainsFunc(ps, func(p config.Retention) bool { return p.Scope == config.ScopeGroups })
}

// targets are a policy's scope targets as the journal records them.
func targets(p config.Retention) []string {
	var t []string
	switch p.Scope {
	case config.ScopeDomain:
		t = []string{p.Domain}
	case config.ScopeJIDs:
		t = slices.Clone(p.JIDs)
	case config.ScopeGroups:
		t = slices.Clone(p.Groups)
	}
	slices.Sort(t)
	return t
}

// LockError is a configuration that weakens a locked retention policy the
// journal recorded. Start-up and check-config refuse it.
type LockError struct {
	// Policy is the locked policy's name.
	Policy string
	Msg    string
}

func (e *LockError) Error() string {
	return fmt.Sprintf("archive: locked retention policy %q: %s; a locked policy can only be lengthened or widened", e.Policy, e.Msg)
}

// CheckLocks compares the configured policies with the locked policies the
// journal recorded: each must still be configured, locked, with the same
// scope, at least the same targets and at least the same keep.
func CheckLocks(recorded []storage.LockedPolicy, ps []config.Retention) error {
	var errs []error
	for _, r := range recorded {
		i := slices.IndexFunc(ps, func(p config.Retention) bool { return p.Name == r.Name })
		if i < 0 {
			errs = append(errs, &LockError{r.Name, fmt.Sprintf("removed from the configuration (recorded: %s, %d days)", scopeText(r.Scope, r.Targets), r.KeepDays)})
			continue
		}
		p := ps[i]
		switch {
		case !p.Locked:
			errs = append(errs, &LockError{r.Name, "no longer locked"})
		case p.Scope != r.Scope:
			errs = append(errs, &LockError{r.Name, fmt.Sprintf("scope changed from %q to %q", r.Scope, p.Scope)})
		case p.KeepDays < r.KeepDays:
			errs = append(errs, &LockError{r.Name, fmt.Sprintf("keep_days shortened from %d to %d", r.KeepDays, p.KeepDays)})
		default:
			have := targets(p)
			for _, t := range r.Targets {
				if !slices.Contains(have, t) {
					errs = append(errs, &LockError{r.Name, fmt.Sprintf("narrowed: %q is no longer in its scope", t)})
					break
				}
			}
		}
	}
	return errors.Join(errs...)
}

func scopeText(scope string, t []string) string {
	if len(t) == 0 {
		return scope
	}
	return scope + " " + strings.Join(t, ", ")
}

// EnforceLocks refuses a configuration that weakens a recorded locked
// policy (a *LockError), then records the configuration's locked policies
// that are new or lengthened, each with a journal record (kind policy) and
// an audit event.
func EnforceLocks(ctx context.Context, j storage.Journal, r storage.Retention, ps []config.Retention, actor string, audit *zap.Logger) error {
	recorded, err := r.LockedPolicies(ctx)
	if err != nil {
		return err
	}
	if err := CheckLocks(recorded, ps); err != nil {
		return err
	}
	var changed []storage.LockedPolicy
	for _, p := range ps {
		if !p.Locked {
			continue
		}
		i := slices.IndexFunc(recorded, func(l storage.LockedPolicy) bool { return l.Name == p.Name })
		if i >= 0 && recorded[i].KeepDays == p.KeepDays && slices.Equal(recorded[i].Targets, targets(p)) {
			continue
		}
		changed = append(changed, storage.LockedPolicy{Name: p.Name, Scope: p.Scope, Targets: targets(p), KeepDays: p.KeepDays, Recorded: time.Now()})
	}
	if len(changed) == 0 {
		return nil
	}
	// The journal record first: a policy is never enforced without it.
	type policyRecord struct {
		Action   string   `json:"action"`
		Name     string   `json:"name"`
		Scope    string   `json:"scope"`
		Targets  []string `json:"targets,omitempty"`
		KeepDays int      `json:"keep_days"`
	}
	for _, c := range changed {
		if _, err := appendEvent(ctx, j, storage.KindPolicy, actor, policyRecord{"lock", c.Name, c.Scope, c.Targets, c.KeepDays}); err != nil {
			return err
		}
	}
	if err := r.RecordLockedPolicies(ctx, changed); err != nil {
		return err
	}
	for _, c := range changed {
		audit.Info("archive_retention_locked", zap.String("actor", actor), zap.String("policy", c.Name),
			zap.String("scope", scopeText(c.Scope, c.Targets)), zap.Int("keep_days", c.KeepDays))
	}
	return nil
}

// appendEvent appends a record the archive writes about itself (kind
// export, hold, disposition, search, policy): from is the actor, the
// content is v as JSON. It returns the record's seq once durable.
func appendEvent(ctx context.Context, j storage.Journal, kind storage.RecordKind, actor string, v any) (int64, error) {
	content, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	return appendEventContent(ctx, j, kind, actor, content)
}

// appendEventContent appends the archive's own record of kind with the
// given content (appendEvent's, or a signed act's).
func appendEventContent(ctx context.Context, j storage.Journal, kind storage.RecordKind, actor string, content []byte) (int64, error) {
	now := time.Now()
	data, err := appendRecord(nil, now, string(storage.DirLocal), string(kind), actor, "", "", "", content)
	if err != nil {
		return 0, err
	}
	recs := []storage.JournalRecord{{Time: now, Direction: storage.DirLocal, Kind: kind, From: actor, StanzaSize: len(content), Data: data}}
	if err := j.Append(ctx, recs); err != nil {
		return 0, fmt.Errorf("archive: journal %s record: %w", kind, err)
	}
	return recs[0].Seq, nil
}

// HoldFromConfig turns an [[archive.hold]] into a hold placed now.
func HoldFromConfig(h config.Hold) storage.Hold {
	out := storage.Hold{Name: h.Name, Custodians: slices.Clone(h.Custodians), Reason: h.Reason, PlacedBy: h.PlacedBy}
	if out.PlacedBy == "" {
		out.PlacedBy = "config"
	}
	if h.From != "" {
		out.From, _ = time.Parse(time.DateOnly, h.From)
	}
	if h.To != "" {
		t, _ := time.Parse(time.DateOnly, h.To)
		out.To = t.Add(24 * time.Hour)
	}
	return out
}

// holdRecord is the content of a hold record.
type holdRecord struct {
	Action     string   `json:"action"` // place or release
	Name       string   `json:"name"`
	Custodians []string `json:"custodians,omitempty"`
	From       string   `json:"from,omitempty"`
	To         string   `json:"to,omitempty"` // exclusive
	Reason     string   `json:"reason"`
	By         string   `json:"by"`
}

func rfc3339OrEmpty(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// PlaceHold stores a new legal hold, then journals it (kind hold) and
// writes an audit event. The hold takes effect before its record is
// written: a failure in between leaves more held, never less.
func PlaceHold(ctx context.Context, j storage.Journal, r storage.Retention, h storage.Hold, audit *zap.Logger) error {
	if h.Name == "" || len(h.Custodians) == 0 || strings.TrimSpace(h.Reason) == "" || h.PlacedBy == "" {
		return errors.New("archive: a legal hold needs a name, custodians, a reason and who placed it")
	}
	for _, c := range h.Custodians {
		if b, err := jid.Parse(c); err != nil || b.Resourcepart() != "" || b.Localpart() == "" || b.String() != c {
			return fmt.Errorf("archive: hold custodian %q is not a normalized bare JID", c)
		}
	}
	if !h.From.IsZero() && !h.To.IsZero() && !h.From.Before(h.To) {
		return errors.New("archive: hold date range is empty")
	}
	if h.PlacedAt.IsZero() {
		h.PlacedAt = time.Now()
	}
	if err := r.AddHold(ctx, h); err != nil {
		return err
	}
	if _, err := appendEvent(ctx, j, storage.KindHold, h.PlacedBy, holdRecord{"place", h.Name, h.Custodians,
		rfc3339OrEmpty(h.From), rfc3339OrEmpty(h.To), h.Reason, h.PlacedBy}); err != nil {
		return fmt.Errorf("hold %q is in force but its journal record failed: %w", h.Name, err)
	}
	audit.Info("archive_hold_placed", zap.String("actor", h.PlacedBy), zap.String("hold", h.Name),
		zap.Strings("custodians", h.Custodians), zap.String("from", rfc3339OrEmpty(h.From)), zap.String("to", rfc3339OrEmpty(h.To)),
		zap.String("reason", h.Reason))
	return nil
}

// ReleaseHold journals the release of an active hold (kind hold), then
// releases it and writes an audit event: a failure in between leaves the
// hold standing.
func ReleaseHold(ctx context.Context, j storage.Journal, r storage.Retention, name, by, reason string, audit *zap.Logger) error {
	if by == "" || strings.TrimSpace(reason) == "" {
		return errors.New("archive: releasing a hold needs who releases it and why")
	}
	hs, err := r.Holds(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(hs, func(h storage.Hold) bool { return h.Name == name && h.Active() })
	if i < 0 {
		return fmt.Errorf("archive: %w: %q", storage.ErrNoHold, name)
	}
	if _, err := appendEvent(ctx, j, storage.KindHold, by, holdRecord{Action: "release", Name: name, Custodians: hs[i].Custodians, Reason: reason, By: by}); err != nil {
		return err
	}
	if err := r.ReleaseHold(ctx, name, by, reason, time.Now()); err != nil {
		return err
	}
	audit.Info("archive_hold_released", zap.String("actor", by), zap.String("hold", name), zap.String("reason", reason))
	return nil
}

// SyncConfigHolds places the configuration's holds the journal does not
// hold yet (by name). A hold recorded earlier and gone from the file
// stays in force.
func SyncConfigHolds(ctx context.Context, j storage.Journal, r storage.Retention, hs []config.Hold, audit *zap.Logger, log *zap.Logger) error {
	have, err := r.Holds(ctx)
	if err != nil {
		return err
	}
	for _, c := range hs {
		if slices.ContainsFunc(have, func(h storage.Hold) bool { return h.Name == c.Name }) {
			continue
		}
		if err := PlaceHold(ctx, j, r, HoldFromConfig(c), audit); err != nil {
			return err
		}
	}
	for _, h := range have {
		if h.Active() && !slices.ContainsFunc(hs, func(c config.Hold) bool { return c.Name == h.Name }) && h.PlacedBy == "config" {
			log.Warn("legal hold no longer in the configuration stays in force until `palisade archive hold release`", zap.String("hold", h.Name))
		}
	}
	return nil
}

// PurgeResult is what a purge removed (or, dry, would remove).
type PurgeResult struct {
	// Examined counts the records with content that retention applies to.
	Examined int
	// Purged are the seqs whose content was (would be) removed.
	Purged []int64
	// Held counts records past retention kept by a legal hold.
	Held int
	// ByPolicy counts the purged records by the policy that decided.
	ByPolicy map[string]int
	// AlreadyPurged counts records purged earlier.
	AlreadyPurged int
	// Disposition is the seq of the disposition record (-1 when none).
	Disposition int64
}

// Ranges returns Purged as inclusive [first, last] runs.
func (p PurgeResult) Ranges() [][2]int64 { return runs(p.Purged) }

func runs(seqs []int64) [][2]int64 {
	var out [][2]int64
	for _, s := range seqs {
		if n := len(out); n > 0 && out[n-1][1]+1 == s {
			out[n-1][1] = s
			continue
		}
		out = append(out, [2]int64{s, s})
	}
	return out
}

// dispositionRecord is the content of a disposition record.
type dispositionRecord struct {
	Action   string         `json:"action"` // purge
	Ranges   [][2]int64     `json:"ranges"` // inclusive seq ranges
	Count    int            `json:"count"`
	ByPolicy map[string]int `json:"by_policy"`
	Held     int            `json:"held"`
	Time     string         `json:"time"`
	By       string         `json:"by"`
}

// purgeable tells whether retention applies to records of kind k at all:
// what users sent (every channel), not the archive's own records.
func purgeable(k storage.RecordKind) bool {
	switch k {
	case storage.KindMessage, storage.KindSubscription, storage.KindPresence, storage.KindIQ,
		storage.KindFileTransfer, storage.KindJingle, storage.KindCommand, storage.KindPEP, storage.KindVCard:
		return true
	}
	return false
}

// Purge removes the content of every record past retention that no active
// hold covers: first it journals a disposition record listing them (seq
// ranges, counts, deciding policies), then it clears their content in bounded
// transactions, keeping their leaf hashes. With dryRun it only reports.
//
// The holds are those the journal stores and those of cfgHolds (the
// configuration's) it does not store yet.
func Purge(ctx context.Context, j storage.Journal, r storage.Retention, ps []config.Retention, cfgHolds []config.Hold, now time.Time, dryRun bool, actor string, audit *zap.Logger) (PurgeResult, error) {
	res := PurgeResult{ByPolicy: map[string]int{}, Disposition: -1}
	if len(ps) == 0 {
		return res, nil
	}
	holds, err := r.Holds(ctx)
	if err != nil {
		return res, err
	}
	for _, c := range cfgHolds {
		if !slices.ContainsFunc(holds, func(h storage.Hold) bool { return h.Name == c.Name }) {
			holds = append(holds, HoldFromConfig(c))
		}
	}
	var members map[string][]string
	if groupScoped(ps) {
		if members, err = r.Memberships(ctx); err != nil {
			return res, err
		}
	}
	head, err := j.TreeHead(ctx)
	if err != nil {
		return res, err
	}
	err = j.Records(ctx, 0, head.Size, func(rec storage.JournalRecord) error {
		if !purgeable(rec.Kind) {
			return nil
		}
		if rec.Purged {
			res.AlreadyPurged++
			return nil
		}
		from, to := bareOf(rec.From), bareOf(rec.To)
		days, name := keepFor(ps, members, from, to)
		if days == 0 {
			return nil
		}
		res.Examined++
		if !rec.Time.Before(now.Add(-time.Duration(days) * 24 * time.Hour)) {
			return nil
		}
		for _, h := range holds {
			if h.Covers(from, rec.Time) || h.Covers(to, rec.Time) {
				res.Held++
				return nil
			}
		}
		res.Purged = append(res.Purged, rec.Seq)
		res.ByPolicy[name]++
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("archive: purge: %w", err)
	}
	sort.Slice(res.Purged, func(a, b int) bool { return res.Purged[a] < res.Purged[b] })
	if dryRun || len(res.Purged) == 0 {
		return res, nil
	}
	d := dispositionRecord{Action: "purge", Ranges: res.Ranges(), Count: len(res.Purged), ByPolicy: res.ByPolicy,
		Held: res.Held, Time: now.UTC().Format(time.RFC3339), By: actor}
	seq, err := appendEvent(ctx, j, storage.KindDisposition, actor, d)
	if err != nil {
		return res, err
	}
	res.Disposition = seq
	if err := r.Purge(ctx, res.Purged, seq); err != nil {
		return res, fmt.Errorf("archive: purge (disposition record %d written): %w", seq, err)
	}
	audit.Info("archive_purge", zap.String("actor", actor), zap.Int("purged", len(res.Purged)),
		zap.Int("held", res.Held), zap.Int64("disposition", seq), zap.Any("by_policy", res.ByPolicy))
	return res, nil
}
