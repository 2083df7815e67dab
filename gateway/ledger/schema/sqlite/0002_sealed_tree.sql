-- Schema 2 (SQLite): signed tree heads, stored Merkle nodes, and retention checkpoints.
-- Upgrades a schema-1 database in place; nothing existing is rewritten. The nodes of entries
-- recorded before the upgrade are filled in by the sealer on its first runs, a bounded batch at a
-- time; until then proofs over them are computed from the stored leaf hashes as before.

-- Perfect subtrees of the RFC 9162 tree: node `idx` of `level` covers leaves
-- [idx * 2^level, (idx + 1) * 2^level). Level 0 holds leaf hashes. Written by the sealer, in the
-- transaction that signs a head, for every subtree complete within that head. Kept when entries
-- are pruned.
CREATE TABLE tree_nodes (
    level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx   INTEGER NOT NULL CHECK (idx >= 0),
    hash  BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;

-- Signed tree heads, one per size (see the PostgreSQL schema). `timestamp` is milliseconds.
CREATE TABLE tree_heads (
    size      INTEGER PRIMARY KEY CHECK (size > 0),
    timestamp INTEGER NOT NULL CHECK (timestamp >= 0),
    root      BLOB    NOT NULL CHECK (length(root) = 32),
    key_id    BLOB    NOT NULL CHECK (length(key_id) = 8),
    signature BLOB    NOT NULL CHECK (length(signature) = 64)
) STRICT;

-- At most one row, written by retention: entries 1..=size have been pruned.
CREATE TABLE ledger_checkpoint (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    size       INTEGER NOT NULL CHECK (size > 0),
    chain_hash BLOB    NOT NULL CHECK (length(chain_hash) = 32)
) STRICT;

-- Entries stay append-only, except that retention may delete those at or below the checkpoint.
DROP TRIGGER audit_entries_no_delete;
DROP TRIGGER audit_subjects_no_delete;

CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
WHEN OLD.seq > (SELECT COALESCE(MAX(size), 0) FROM ledger_checkpoint)
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER audit_subjects_no_delete BEFORE DELETE ON audit_subjects
WHEN OLD.seq > (SELECT COALESCE(MAX(size), 0) FROM ledger_checkpoint)
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER tree_nodes_no_update BEFORE UPDATE ON tree_nodes
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER tree_nodes_no_delete BEFORE DELETE ON tree_nodes
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER tree_heads_no_update BEFORE UPDATE ON tree_heads
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER tree_heads_no_delete BEFORE DELETE ON tree_heads
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;
