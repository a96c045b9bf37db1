package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/palisade-im/palisade/storage"
)

const nodeColumns = `node, access_model, roster_groups, max_items, persist_items, send_last, notify_retract, created`

func scanNode(owner string, sc interface{ Scan(...any) error }) (storage.PubSubNode, error) {
	n := storage.PubSubNode{Owner: owner}
	var groups string
	var persist, notify int
	var created int64
	err := sc.Scan(&n.Name, &n.Config.AccessModel, &groups, &n.Config.MaxItems, &persist,
		&n.Config.SendLastPublished, &notify, &created)
	if err != nil {
		return n, err
	}
	if err := json.Unmarshal([]byte(groups), &n.Config.RosterGroupsAllowed); err != nil {
		return n, fmt.Errorf("node %s: roster groups: %w", n.Name, err)
	}
	n.Config.PersistItems = persist != 0
	n.Config.NotifyRetract = notify != 0
	n.Created = time.Unix(0, created)
	return n, nil
}

func groupsJSON(g []string) (string, error) {
	if g == nil {
		g = []string{}
	}
	b, err := json.Marshal(g)
	return string(b), err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Node returns one node or storage.ErrNotFound.
func (s *Store) Node(ctx context.Context, owner, node string) (storage.PubSubNode, error) {
	var n storage.PubSubNode
	err := s.read(ctx, "get pubsub node", func(tx *sql.Tx) error {
		var err error
		n, err = getNode(ctx, tx, owner, node)
		return err
	})
	return n, err
}

func getNode(ctx context.Context, tx *sql.Tx, owner, node string) (storage.PubSubNode, error) {
	row := tx.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM pubsub_nodes WHERE owner = ? AND node = ?`, owner, node)
	n, err := scanNode(owner, row)
	if errors.Is(err, sql.ErrNoRows) {
		return n, storage.ErrNotFound
	}
	return n, err
}

// Nodes lists an owner's nodes sorted by name.
func (s *Store) Nodes(ctx context.Context, owner string) ([]storage.PubSubNode, error) {
	var out []storage.PubSubNode
	err := s.read(ctx, "list pubsub nodes", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+nodeColumns+` FROM pubsub_nodes WHERE owner = ? ORDER BY node`, owner)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			n, err := scanNode(owner, rows)
			if err != nil {
				return err
			}
			out = append(out, n)
		}
		return rows.Err()
	})
	return out, err
}

// CreateNode adds a node (storage.ErrExists, a *storage.QuotaError).
func (s *Store) CreateNode(ctx context.Context, n storage.PubSubNode, maxNodes int) error {
	return s.write(ctx, "create pubsub node", func(tx *sql.Tx) error {
		return createNode(ctx, tx, n, maxNodes)
	})
}

func createNode(ctx context.Context, tx *sql.Tx, n storage.PubSubNode, maxNodes int) error {
	if _, err := getNode(ctx, tx, n.Owner, n.Name); err == nil {
		return storage.ErrExists
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if maxNodes > 0 {
		var count int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pubsub_nodes WHERE owner = ?`, n.Owner).Scan(&count); err != nil {
			return err
		}
		if count >= maxNodes {
			return &storage.QuotaError{Quota: storage.QuotaCount, Limit: maxNodes}
		}
	}
	groups, err := groupsJSON(n.Config.RosterGroupsAllowed)
	if err != nil {
		return err
	}
	created := n.Created
	if created.IsZero() {
		created = time.Now()
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO pubsub_nodes (owner, `+nodeColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		n.Owner, n.Name, n.Config.AccessModel, groups, n.Config.MaxItems, boolInt(n.Config.PersistItems),
		n.Config.SendLastPublished, boolInt(n.Config.NotifyRetract), created.UnixNano())
	return err
}

// ConfigureNode replaces a node's configuration and trims its items.
func (s *Store) ConfigureNode(ctx context.Context, owner, node string, cfg storage.NodeConfig) error {
	return s.write(ctx, "configure pubsub node", func(tx *sql.Tx) error {
		groups, err := groupsJSON(cfg.RosterGroupsAllowed)
		if err != nil {
			return err
		}
		if err := execOne(ctx, tx, `UPDATE pubsub_nodes SET access_model = ?, roster_groups = ?, max_items = ?,
			persist_items = ?, send_last = ?, notify_retract = ? WHERE owner = ? AND node = ?`,
			cfg.AccessModel, groups, cfg.MaxItems, boolInt(cfg.PersistItems), cfg.SendLastPublished,
			boolInt(cfg.NotifyRetract), owner, node); err != nil {
			return err
		}
		if err := trimItems(ctx, tx, owner, node, cfg.Keep()); err != nil {
			return err
		}
		_, err = refreshNodeBytes(ctx, tx, owner, node)
		return err
	})
}

// refreshNodeBytes recomputes a node's bytes (the sum of its items'
// payload sizes, through the covering index) after its items changed, and
// returns it.
func refreshNodeBytes(ctx context.Context, tx *sql.Tx, owner, node string) (int, error) {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM pubsub_items WHERE owner = ? AND node = ?`,
		owner, node).Scan(&n); err != nil {
		return 0, err
	}
	_, err := tx.ExecContext(ctx, `UPDATE pubsub_nodes SET bytes = ? WHERE owner = ? AND node = ?`, n, owner, node)
	return n, err
}

func trimItems(ctx context.Context, tx *sql.Tx, owner, node string, keep int) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM pubsub_items WHERE owner = ? AND node = ? AND seq NOT IN
		(SELECT seq FROM pubsub_items WHERE owner = ? AND node = ? ORDER BY seq DESC LIMIT ?)`,
		owner, node, owner, node, keep)
	return err
}

// DeleteNode removes a node and its items.
func (s *Store) DeleteNode(ctx context.Context, owner, node string) error {
	return s.write(ctx, "delete pubsub node", func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM pubsub_items WHERE owner = ? AND node = ?`,
			`DELETE FROM pubsub_subscriptions WHERE owner = ? AND node = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, owner, node); err != nil {
				return err
			}
		}
		return execOne(ctx, tx, `DELETE FROM pubsub_nodes WHERE owner = ? AND node = ?`, owner, node)
	})
}

// PublishItem stores an item as the node's newest and trims the node,
// then checks the byte quotas on what is left; over one, the
// transaction is rolled back.
func (s *Store) PublishItem(ctx context.Context, owner, node string, item storage.PubSubItem, create *storage.NodeConfig, q storage.PubSubQuota) (bool, error) {
	created := false
	err := s.write(ctx, "publish pubsub item", func(tx *sql.Tx) error {
		created = false
		n, err := getNode(ctx, tx, owner, node)
		switch {
		case errors.Is(err, storage.ErrNotFound) && create != nil:
			n = storage.PubSubNode{Owner: owner, Name: node, Config: *create, Created: time.Now()}
			if err := createNode(ctx, tx, n, q.MaxNodes); err != nil {
				return err
			}
			created = true
		case err != nil:
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM pubsub_items WHERE owner = ? AND node = ? AND item_id = ?`,
			owner, node, item.ID); err != nil {
			return err
		}
		stamp := item.Published
		if stamp.IsZero() {
			stamp = time.Now()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO pubsub_items (owner, node, item_id, publisher, published, payload, size)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, owner, node, item.ID, item.Publisher, stamp.UnixNano(), blob(item.Payload), len(item.Payload)); err != nil {
			return err
		}
		if err := trimItems(ctx, tx, owner, node, n.Config.Keep()); err != nil {
			return err
		}
		return checkPubSubBytes(ctx, tx, owner, node, q)
	})
	return created, err
}

// checkPubSubBytes updates the node's bytes and returns a
// *storage.QuotaError when the node's or the owner's items hold more
// payload bytes than q allows.
func checkPubSubBytes(ctx context.Context, tx *sql.Tx, owner, node string, q storage.PubSubQuota) error {
	n, err := refreshNodeBytes(ctx, tx, owner, node)
	if err != nil {
		return err
	}
	if q.MaxNodeBytes > 0 && n > q.MaxNodeBytes {
		return &storage.QuotaError{Quota: storage.QuotaNodeBytes, Limit: q.MaxNodeBytes}
	}
	if q.MaxBytes > 0 {
		n, err := pubsubBytes(ctx, tx, owner)
		if err != nil {
			return err
		}
		if n > q.MaxBytes {
			return &storage.QuotaError{Quota: storage.QuotaBytes, Limit: q.MaxBytes}
		}
	}
	return nil
}

func pubsubBytes(ctx context.Context, tx *sql.Tx, owner string) (int, error) {
	var n int
	err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(bytes), 0) FROM pubsub_nodes WHERE owner = ?`, owner).Scan(&n)
	return n, err
}

// PubSubBytes returns the payload bytes of all of an owner's items.
func (s *Store) PubSubBytes(ctx context.Context, owner string) (int, error) {
	var n int
	err := s.read(ctx, "pubsub bytes", func(tx *sql.Tx) error {
		var err error
		n, err = pubsubBytes(ctx, tx, owner)
		return err
	})
	return n, err
}

// ItemRefs lists a node's item IDs and payload sizes oldest first.
func (s *Store) ItemRefs(ctx context.Context, owner, node string) ([]storage.PubSubItemRef, error) {
	var out []storage.PubSubItemRef
	err := s.read(ctx, "list pubsub items", func(tx *sql.Tx) error {
		if _, err := getNode(ctx, tx, owner, node); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT item_id, size FROM pubsub_items WHERE owner = ? AND node = ? ORDER BY seq`, owner, node)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r storage.PubSubItemRef
			if err := rows.Scan(&r.ID, &r.Size); err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// Items returns a node's items newest first, or those with the given IDs.
func (s *Store) Items(ctx context.Context, owner, node string, max int, ids []string) ([]storage.PubSubItem, error) {
	var out []storage.PubSubItem
	err := s.read(ctx, "get pubsub items", func(tx *sql.Tx) error {
		if _, err := getNode(ctx, tx, owner, node); err != nil {
			return err
		}
		scan := func(sc interface{ Scan(...any) error }) (storage.PubSubItem, error) {
			var it storage.PubSubItem
			var stamp int64
			err := sc.Scan(&it.ID, &it.Publisher, &stamp, &it.Payload)
			it.Published = time.Unix(0, stamp)
			return it, err
		}
		if len(ids) > 0 {
			seen := map[string]bool{}
			for _, id := range ids {
				if seen[id] {
					continue
				}
				seen[id] = true
				it, err := scan(tx.QueryRowContext(ctx, `SELECT item_id, publisher, published, payload FROM pubsub_items
					WHERE owner = ? AND node = ? AND item_id = ?`, owner, node, id))
				if errors.Is(err, sql.ErrNoRows) {
					continue
				}
				if err != nil {
					return err
				}
				out = append(out, it)
			}
			return nil
		}
		limit := -1
		if max > 0 {
			limit = max
		}
		rows, err := tx.QueryContext(ctx, `SELECT item_id, publisher, published, payload FROM pubsub_items
			WHERE owner = ? AND node = ? ORDER BY seq DESC LIMIT ?`, owner, node, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			it, err := scan(rows)
			if err != nil {
				return err
			}
			out = append(out, it)
		}
		return rows.Err()
	})
	return out, err
}

// RetractItem deletes one item.
func (s *Store) RetractItem(ctx context.Context, owner, node, id string) error {
	return s.write(ctx, "retract pubsub item", func(tx *sql.Tx) error {
		if err := execOne(ctx, tx, `DELETE FROM pubsub_items WHERE owner = ? AND node = ? AND item_id = ?`, owner, node, id); err != nil {
			return err
		}
		_, err := refreshNodeBytes(ctx, tx, owner, node)
		return err
	})
}

// Subscribe records an explicit subscription.
func (s *Store) Subscribe(ctx context.Context, owner, node, jid, subscriber string, max int) error {
	return s.write(ctx, "pubsub subscribe", func(tx *sql.Tx) error {
		if _, err := getNode(ctx, tx, owner, node); err != nil {
			return err
		}
		var n int
		err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pubsub_subscriptions WHERE owner = ? AND node = ? AND jid = ?`,
			owner, node, jid).Scan(&n)
		if err != nil || n > 0 {
			return err
		}
		if max > 0 {
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM pubsub_subscriptions WHERE subscriber = ?`, subscriber).Scan(&n); err != nil {
				return err
			}
			if n >= max {
				return storage.ErrQuota
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO pubsub_subscriptions (owner, node, jid, subscriber) VALUES (?, ?, ?, ?)`,
			owner, node, jid, subscriber)
		return err
	})
}

// Unsubscribe removes a subscription.
func (s *Store) Unsubscribe(ctx context.Context, owner, node, jid string) error {
	return s.write(ctx, "pubsub unsubscribe", func(tx *sql.Tx) error {
		return execOne(ctx, tx, `DELETE FROM pubsub_subscriptions WHERE owner = ? AND node = ? AND jid = ?`, owner, node, jid)
	})
}

// Subscribers lists a node's explicit subscribers.
func (s *Store) Subscribers(ctx context.Context, owner, node string) ([]string, error) {
	var out []string
	err := s.read(ctx, "pubsub subscribers", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT jid FROM pubsub_subscriptions WHERE owner = ? AND node = ? ORDER BY jid`, owner, node)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var j string
			if err := rows.Scan(&j); err != nil {
				return err
			}
			out = append(out, j)
		}
		return rows.Err()
	})
	return out, err
}
