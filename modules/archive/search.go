package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
)

// SearchOptions select records for an officer's search: the export's
// filters, and a text the message body must contain (case-insensitive;
// with a text only messages match). A text search over encrypted records
// needs Open: it fails rather than miss them.
type SearchOptions struct {
	ExportOptions
	Text string
	// Flag selects the records that the content rule of that name
	// flagged for review.
	Flag string
	// Limit bounds the hits returned (0: 1000).
	Limit int
}

// Hit is one record a search found.
type Hit struct {
	Seq       int64
	Time      time.Time
	Direction string
	Kind      string
	From, To  string
	Type      string
	Body      string
	Encrypted bool
	Purged    bool
	// Flags are the content rules that flagged the record.
	Flags []string
}

// ErrSearchNeedsKey is returned for a text search over encrypted records
// without an officer key.
var ErrSearchNeedsKey = errors.New("archive: the journal holds encrypted records: a text search needs the officer's key (--decrypt-key)")

// searchRecord is the content of a search record.
type searchRecord struct {
	From      string     `json:"from,omitempty"`
	To        string     `json:"to,omitempty"`
	Users     []string   `json:"users,omitempty"`
	With      []string   `json:"with,omitempty"`
	Kinds     []string   `json:"kinds,omitempty"`
	Text      string     `json:"text,omitempty"`
	Flag      string     `json:"flag,omitempty"`
	Decrypted bool       `json:"decrypted"`
	Hits      int        `json:"hits"`
	Seqs      [][2]int64 `json:"seqs"`
	By        string     `json:"by"`
	// Officer and SignedAt: as in ExportRecord, for a signed act.
	Officer  string `json:"officer,omitempty"`
	SignedAt string `json:"signed_at,omitempty"`
}

// Search finds the matching records, then journals the search (kind
// search: who searched for what, and which records it returned) and writes
// an audit event; without that record it returns no hits.
func Search(ctx context.Context, j storage.Journal, opt SearchOptions, actor string, audit *zap.Logger) ([]Hit, error) {
	limit := opt.Limit
	if limit <= 0 {
		limit = 1000
	}
	text := strings.ToLower(opt.Text)
	var hits []Hit
	errFull := errors.New("full")
	head, err := j.TreeHead(ctx)
	if err != nil {
		return nil, err
	}
	err = j.Records(ctx, 0, head.Size, func(r storage.JournalRecord) error {
		if !opt.match(r) || (text != "" || opt.Flag != "") && r.Kind != storage.KindMessage {
			return nil
		}
		if opt.Flag != "" && (r.Purged || !bytes.Contains(r.Data, []byte(`"flags":[`))) {
			return nil // a record's flags are outside its content: no key needed
		}
		h := Hit{Seq: r.Seq, Time: r.Time, Direction: string(r.Direction), Kind: string(r.Kind), From: r.From, To: r.To,
			Type: r.StanzaType, Purged: r.Purged}
		if !r.Purged {
			rec, err := DecodeRecord(r.Data)
			if err != nil {
				return fmt.Errorf("record %d: %w", r.Seq, err)
			}
			if opt.Flag != "" && !slices.Contains(rec.Flags, opt.Flag) {
				return nil
			}
			h.Flags = rec.Flags
			content := rec.Content
			if rec.Enc != EncNone {
				h.Encrypted, content = true, ""
				switch {
				case opt.Open != nil:
					plain, err := opt.Open.Open(rec)
					if err != nil {
						return fmt.Errorf("record %d: %w", r.Seq, err)
					}
					content = string(plain)
				case text != "":
					return ErrSearchNeedsKey
				}
			}
			if rec.Kind == string(storage.KindMessage) {
				h.Body, _, _ = contentFields(content)
			} else if !h.Encrypted || opt.Open != nil {
				h.Body = content // the archive's own records: their JSON
			}
		}
		if text != "" && !strings.Contains(strings.ToLower(h.Body), text) {
			return nil
		}
		hits = append(hits, h)
		if len(hits) >= limit {
			return errFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		return nil, fmt.Errorf("archive: search: %w", err)
	}
	seqs := make([]int64, len(hits))
	for i, h := range hits {
		seqs[i] = h.Seq
	}
	desc := searchRecord{Users: opt.Users, With: opt.With, Kinds: opt.Kinds, Text: opt.Text, Flag: opt.Flag, Decrypted: opt.Open != nil,
		Hits: len(hits), Seqs: runs(seqs), By: actor}
	if !opt.From.IsZero() {
		desc.From = opt.From.UTC().Format(time.RFC3339)
	}
	if !opt.To.IsZero() {
		desc.To = opt.To.UTC().Format(time.RFC3339)
	}
	if desc.Seqs == nil {
		desc.Seqs = [][2]int64{}
	}
	var seq int64
	if opt.Officer != nil {
		// A decrypting search is signed by the officer (officer.go).
		desc.Officer, desc.SignedAt = Fingerprint(opt.Officer), time.Now().UTC().Format(time.RFC3339Nano)
		seq, err = appendSignedEvent(ctx, j, storage.KindSearch, actor, desc, opt.Officer)
	} else {
		seq, err = appendEvent(ctx, j, storage.KindSearch, actor, desc)
	}
	if err != nil {
		return nil, fmt.Errorf("the search could not be recorded in the journal: %w", err)
	}
	audit.Info("archive_search", zap.String("actor", actor), zap.Strings("users", opt.Users), zap.Strings("with", opt.With),
		zap.Strings("kinds", opt.Kinds), zap.String("text", opt.Text), zap.String("flag", opt.Flag), zap.String("from", desc.From), zap.String("to", desc.To),
		zap.Bool("decrypted", opt.Open != nil), zap.Int("hits", len(hits)), zap.Int64("record", seq))
	return hits, nil
}
