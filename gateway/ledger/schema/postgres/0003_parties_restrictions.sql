-- The parties to each share, break-glass in the index, faster searches, and s.45 restrictions
-- (PostgreSQL).

-- The providing agency (whose data the entry concerns) and whether emergency access was invoked:
-- search columns like the others, copied from the body and not hashed. Entries recorded before
-- this step hold the defaults until the gateway fills them in from their bodies (the ledger cannot
-- read a body), which the trigger below allows once, for those entries only.
ALTER TABLE audit_entries ADD COLUMN provider TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_entries ADD COLUMN break_glass BOOLEAN NOT NULL DEFAULT FALSE;

-- Entries 1..=end_seq predate the columns above; those before next_seq have been filled in.
CREATE TABLE ledger_index_backfill (
    id       SMALLINT PRIMARY KEY CHECK (id = 1),
    next_seq BIGINT   NOT NULL CHECK (next_seq >= 1),
    end_seq  BIGINT   NOT NULL CHECK (end_seq >= 0)
);

INSERT INTO ledger_index_backfill (id, next_seq, end_seq) SELECT 1, 1, size FROM ledger_head;

-- Every column of an entry stays as written; the two new search columns may be written once, for
-- entries older than them, while they still hold their defaults.
CREATE FUNCTION ledger_backfill_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.seq <= (SELECT end_seq FROM ledger_index_backfill WHERE id = 1)
       AND OLD.provider = '' AND NOT OLD.break_glass
       AND (NEW.seq, NEW.entry_id, NEW.recorded_at, NEW.body, NEW.leaf_hash, NEW.chain_hash,
            NEW.agency, NEW.subject, NEW.recipient, NEW.action, NEW.purpose, NEW.isa_id,
            NEW.outcome)
           = (OLD.seq, OLD.entry_id, OLD.recorded_at, OLD.body, OLD.leaf_hash, OLD.chain_hash,
              OLD.agency, OLD.subject, OLD.recipient, OLD.action, OLD.purpose, OLD.isa_id,
              OLD.outcome) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit entries are append-only';
END
$$;

DROP TRIGGER audit_entries_append_only ON audit_entries;

CREATE TRIGGER audit_entries_no_delete
    BEFORE DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER audit_entries_backfill_only
    BEFORE UPDATE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_backfill_only();

-- A DPO sees their agency's shares sent and received: a page is the union of two ordered index
-- walks, one for the entries its principals made, one for the shares of its data others made
-- (partial, so an agency that mostly shares with itself does not walk its own entries twice).
-- Date ranges walk (party, time, seq), so a week a year back reads that week only.
CREATE INDEX audit_entries_agency_time     ON audit_entries (agency, recorded_at, seq);
CREATE INDEX audit_entries_provider        ON audit_entries (provider, seq)
    WHERE provider <> agency;
CREATE INDEX audit_entries_provider_time   ON audit_entries (provider, recorded_at, seq)
    WHERE provider <> agency;
CREATE INDEX audit_entries_break_glass     ON audit_entries (agency, seq) WHERE break_glass;
CREATE INDEX audit_entries_break_glass_out ON audit_entries (provider, seq)
    WHERE break_glass AND provider <> agency;

-- DPA 2018 s.45(4): a disclosure made for a live investigation may be withheld from the subject
-- access report until a date. One row per restriction, named by the id of the ledger entry that
-- recorded it; the ledger entry is the evidence, this row what the report consults. A row is
-- reserved (committed false) before its ledger entry is appended and committed after, so a
-- restriction whose append failed is never honoured. Lifting marks the rows; nothing restricted
-- is ever an audit entry changed.
CREATE TABLE entry_restrictions (
    restriction_id TEXT    PRIMARY KEY,
    seq            BIGINT  NOT NULL,
    until_at       BIGINT  NOT NULL,
    reason         TEXT    NOT NULL,
    agency         TEXT    NOT NULL,
    restricted_by  TEXT    NOT NULL,
    recorded_at    BIGINT  NOT NULL,
    committed      BOOLEAN NOT NULL DEFAULT FALSE,
    lifted_by      TEXT
);

CREATE INDEX entry_restrictions_seq ON entry_restrictions (seq);

-- ledger_append with the two new search columns, beside the thirteen-argument one of schema 2,
-- which replicas of the previous release keep calling during a rolling update (their entries
-- take the columns' defaults).

CREATE FUNCTION ledger_append(
    ids TEXT[], recorded BIGINT[], bodies BYTEA[], leaves BYTEA[],
    agencies TEXT[], subjects TEXT[], recipients TEXT[], actions TEXT[],
    purposes TEXT[], isas TEXT[], outcomes TEXT[], ref_pos INT[], refs TEXT[],
    providers TEXT[], break_glasses BOOLEAN[]
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
                                   agency, subject, recipient, action, purpose, isa_id, outcome,
                                   provider, break_glass)
        SELECT t.s, ids[t.p], recorded[t.p], bodies[t.p], leaves[t.p], t.c, agencies[t.p],
               subjects[t.p], recipients[t.p], actions[t.p], purposes[t.p], isas[t.p],
               outcomes[t.p], providers[t.p], break_glasses[t.p]
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
