package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/palisade-im/palisade/storage"
	"go.uber.org/zap"
)

// The officers' review queue: messages that a content rule with action
// "flag" marked (their journal records carry "flags"), each open until a
// review record (kind review) closes it. Listing shows no content: an
// officer reads the messages with a search (archive search --flag),
// which is journaled.

// ReviewItem is a flagged record and whether a review closed it.
type ReviewItem struct {
	Seq      int64
	Time     time.Time
	From, To string
	Flags    []string
	// Closed is the seq of the review record that closed it (0: open).
	Closed int64
	By     string
	Reason string
}

// reviewRecord is the content of a review record.
type reviewRecord struct {
	Closes int64    `json:"closes"`
	Flags  []string `json:"flags"`
	By     string   `json:"by"`
	Reason string   `json:"reason"`
}

// ErrNotFlagged is returned when closing a record no content rule flagged.
var ErrNotFlagged = errors.New("archive: that record was not flagged for review")

// ErrReviewClosed is returned when closing a record a review closed already.
var ErrReviewClosed = errors.New("archive: that record's review is closed already")

// ReviewQueue returns every flagged record, oldest first, with the review
// that closed it if any.
func ReviewQueue(ctx context.Context, j storage.Journal) ([]ReviewItem, error) {
	head, err := j.TreeHead(ctx)
	if err != nil {
		return nil, err
	}
	var items []ReviewItem
	at := map[int64]int{}
	err = j.Records(ctx, 0, head.Size, func(r storage.JournalRecord) error {
		switch {
		case r.Kind == storage.KindReview && !r.Purged:
			rec, err := DecodeRecord(r.Data)
			if err != nil {
				return fmt.Errorf("record %d: %w", r.Seq, err)
			}
			var rv reviewRecord
			if err := json.Unmarshal([]byte(rec.Content), &rv); err != nil {
				return fmt.Errorf("review record %d: %w", r.Seq, err)
			}
			if i, ok := at[rv.Closes]; ok && items[i].Closed == 0 {
				items[i].Closed, items[i].By, items[i].Reason = r.Seq, rv.By, rv.Reason
			}
		case r.Kind == storage.KindMessage && !r.Purged && bytes.Contains(r.Data, []byte(`"flags":[`)):
			rec, err := DecodeRecord(r.Data)
			if err != nil {
				return fmt.Errorf("record %d: %w", r.Seq, err)
			}
			if len(rec.Flags) > 0 {
				at[r.Seq] = len(items)
				items = append(items, ReviewItem{Seq: r.Seq, Time: r.Time, From: r.From, To: r.To, Flags: rec.Flags})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("archive: review queue: %w", err)
	}
	return items, nil
}

// CloseReview closes the review of the flagged record seq: a review
// record (who, why) in the journal, then an audit event. A record that
// was not flagged, or is closed already, is refused and nothing is
// written.
func CloseReview(ctx context.Context, j storage.Journal, seq int64, actor, reason string, audit *zap.Logger) (int64, error) {
	items, err := ReviewQueue(ctx, j)
	if err != nil {
		return 0, err
	}
	var item *ReviewItem
	for i := range items {
		if items[i].Seq == seq {
			item = &items[i]
		}
	}
	switch {
	case item == nil:
		return 0, ErrNotFlagged
	case item.Closed != 0:
		return 0, fmt.Errorf("%w (record %d, by %s)", ErrReviewClosed, item.Closed, item.By)
	}
	rec, err := appendEvent(ctx, j, storage.KindReview, actor, reviewRecord{Closes: seq, Flags: item.Flags, By: actor, Reason: reason})
	if err != nil {
		return 0, err
	}
	audit.Info("archive_review_closed", zap.String("actor", actor), zap.Int64("closes", seq),
		zap.Strings("flags", item.Flags), zap.String("reason", reason), zap.Int64("record", rec))
	return rec, nil
}
