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

-- Subject rows are written by the ledger in the same transaction as their entry; checking the
-- reference row by row cost more than the rest of an append.
ALTER TABLE audit_subjects DROP CONSTRAINT audit_subjects_seq_fkey;

-- One group-commit batch in one statement, so an append costs one round trip. The same steps as
-- the SQLite path in the ledger's writer: lock the head row (this orders every process's
-- appends), check the head describes the last entry, answer ids already recorded, assign dense
-- sequence numbers and chain hashes (SHA-256(previous || leaf)) to the rest, insert them and
-- their subjects, move the head. Returns:
--   status 1: an id already recorded (its stored receipt); the client compares leaf hashes;
--   status 0: a new entry: its position in the batch (1-based), sequence number, chain hash;
--   status 9 then 8: the head does not describe the last entry; nothing was written. The row
--     with status 9 is the head (size, chain hash), those with 8 the entries from the head's
--     size on, for the client to name the damage.
CREATE FUNCTION ledger_append(
    ids TEXT[], recorded BIGINT[], bodies BYTEA[], leaves BYTEA[],
    agencies TEXT[], subjects TEXT[], recipients TEXT[], actions TEXT[],
    purposes TEXT[], isas TEXT[], outcomes TEXT[], ref_pos INT[], refs TEXT[]
) RETURNS TABLE (r_status SMALLINT, r_pos INT, r_seq BIGINT, r_entry_id TEXT,
                 r_recorded_at BIGINT, r_leaf_hash BYTEA, r_chain_hash BYTEA)
LANGUAGE plpgsql
-- A plan cached while the table was small (a sequential scan) would otherwise be reused as it
-- grows, making every append O(n) until the next ANALYZE.
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    head_size  BIGINT;
    head_chain BYTEA;
    last_seq   BIGINT;
    last_chain BYTEA;
    existing   TEXT[];
    new_pos    INT[]    := '{}';
    new_seq    BIGINT[] := '{}';
    new_chain  BYTEA[]  := '{}';
BEGIN
    SELECT h.size, h.chain_hash INTO head_size, head_chain
      FROM ledger_head h WHERE h.id = 1 FOR UPDATE;
    SELECT a.seq, a.chain_hash INTO last_seq, last_chain
      FROM audit_entries a ORDER BY a.seq DESC LIMIT 1;
    IF NOT ((last_seq IS NULL AND head_size = 0 AND head_chain = decode(repeat('00', 32), 'hex'))
            OR (last_seq = head_size AND last_chain = head_chain)) THEN
        RETURN QUERY SELECT 9::SMALLINT, NULL::INT, head_size, NULL::TEXT, NULL::BIGINT,
                            NULL::BYTEA, head_chain;
        RETURN QUERY SELECT 8::SMALLINT, NULL::INT, a.seq, a.entry_id, NULL::BIGINT,
                            NULL::BYTEA, a.chain_hash
                       FROM audit_entries a WHERE a.seq >= GREATEST(head_size, 1)
                      ORDER BY a.seq LIMIT 2;
        RETURN;
    END IF;

    SELECT COALESCE(array_agg(a.entry_id), '{}') INTO existing
      FROM audit_entries a WHERE a.entry_id = ANY(ids);
    IF cardinality(existing) > 0 THEN
        RETURN QUERY SELECT 1::SMALLINT, NULL::INT, a.seq, a.entry_id, a.recorded_at,
                            a.leaf_hash, a.chain_hash
                       FROM audit_entries a WHERE a.entry_id = ANY(existing);
    END IF;

    FOR i IN 1 .. COALESCE(cardinality(ids), 0) LOOP
        -- An id already recorded, or repeated earlier in this batch, is answered by the client.
        CONTINUE WHEN ids[i] = ANY(existing) OR ids[i] = ANY(ids[1:i - 1]);
        head_size  := head_size + 1;
        head_chain := sha256(head_chain || leaves[i]);
        new_pos    := new_pos || i;
        new_seq    := new_seq || head_size;
        new_chain  := new_chain || head_chain;
    END LOOP;

    IF cardinality(new_pos) > 0 THEN
        INSERT INTO audit_entries (seq, entry_id, recorded_at, body, leaf_hash, chain_hash,
                                   agency, subject, recipient, action, purpose, isa_id, outcome)
        SELECT t.s, ids[t.p], recorded[t.p], bodies[t.p], leaves[t.p], t.c, agencies[t.p],
               subjects[t.p], recipients[t.p], actions[t.p], purposes[t.p], isas[t.p],
               outcomes[t.p]
          FROM unnest(new_pos, new_seq, new_chain) AS t(p, s, c);
        INSERT INTO audit_subjects (seq, subject_ref)
        SELECT t.s, r.ref
          FROM unnest(ref_pos, refs) AS r(p, ref)
          JOIN unnest(new_pos, new_seq) AS t(p, s) ON t.p = r.p;
        UPDATE ledger_head SET size = head_size, chain_hash = head_chain WHERE id = 1;
        RETURN QUERY SELECT 0::SMALLINT, t.p, t.s, NULL::TEXT, NULL::BIGINT, NULL::BYTEA, t.c
                       FROM unnest(new_pos, new_seq, new_chain) AS t(p, s, c);
    END IF;
END
$$;
