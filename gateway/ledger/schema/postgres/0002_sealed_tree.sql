-- Schema 2 (PostgreSQL): signed tree heads, stored Merkle nodes, and retention checkpoints.
-- Upgrades a schema-1 database in place; nothing existing is rewritten. The nodes of entries
-- recorded before the upgrade are filled in by the sealer on its first runs, a bounded batch at a
-- time; until then proofs over them are computed from the stored leaf hashes as before.

-- Perfect subtrees of the RFC 9162 tree: node `idx` of `level` covers leaves
-- [idx * 2^level, (idx + 1) * 2^level). Level 0 holds leaf hashes. Written by the sealer, in the
-- transaction that signs a head, for every subtree complete within that head, so every proof for
-- a sealed size is a handful of primary-key reads. Kept when entries are pruned.
CREATE TABLE tree_nodes (
    level SMALLINT NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx   BIGINT   NOT NULL CHECK (idx >= 0),
    hash  BYTEA    NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- Signed tree heads, one per size: the sealer's Ed25519 signature over RFC 6962's
-- TreeHeadSignature (version, type, timestamp, size, root). `timestamp` is milliseconds since the
-- Unix epoch. The largest size is the sealed size.
CREATE TABLE tree_heads (
    size      BIGINT PRIMARY KEY CHECK (size > 0),
    timestamp BIGINT NOT NULL CHECK (timestamp >= 0),
    root      BYTEA  NOT NULL CHECK (octet_length(root) = 32),
    key_id    BYTEA  NOT NULL CHECK (octet_length(key_id) = 8),
    signature BYTEA  NOT NULL CHECK (octet_length(signature) = 64)
);

-- At most one row, written by retention: entries 1..=size have been pruned; `chain_hash` is the
-- chain hash after entry `size`, where verification resumes. The signed head at `size` (in
-- tree_heads) and the nodes (in tree_nodes) stay, so the rest still verifies.
CREATE TABLE ledger_checkpoint (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    size       BIGINT   NOT NULL CHECK (size > 0),
    chain_hash BYTEA    NOT NULL CHECK (octet_length(chain_hash) = 32)
);

-- Entries stay append-only, except that retention may delete those at or below the checkpoint.
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME IN ('audit_entries', 'audit_subjects') THEN
        IF OLD.seq <= (SELECT COALESCE(MAX(size), 0) FROM ledger_checkpoint) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit entries are append-only';
END
$$;

CREATE TRIGGER tree_nodes_append_only
    BEFORE UPDATE OR DELETE ON tree_nodes
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER tree_nodes_no_truncate
    BEFORE TRUNCATE ON tree_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER tree_heads_append_only
    BEFORE UPDATE OR DELETE ON tree_heads
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER tree_heads_no_truncate
    BEFORE TRUNCATE ON tree_heads
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
