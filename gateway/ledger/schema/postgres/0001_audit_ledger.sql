-- The audit ledger (PostgreSQL). Applied once, inside the schema transaction and under an
-- advisory lock, by the ledger itself.
--
-- `seq` is assigned by the appender inside the same transaction that updates `ledger_head`
-- (never a sequence, which can leave gaps on rollback), so it is dense: 1, 2, 3, ...
-- `recorded_at` is nanoseconds since the Unix epoch, UTC, which round-trips the caller's
-- timestamp exactly (TIMESTAMPTZ keeps only microseconds).

CREATE TABLE audit_entries (
    seq         BIGINT PRIMARY KEY CHECK (seq > 0),
    entry_id    TEXT   NOT NULL UNIQUE,
    recorded_at BIGINT NOT NULL,
    body        BYTEA  NOT NULL,
    leaf_hash   BYTEA  NOT NULL CHECK (octet_length(leaf_hash) = 32),
    chain_hash  BYTEA  NOT NULL CHECK (octet_length(chain_hash) = 32),
    -- Search columns: copies of fields of the body, not hashed.
    agency      TEXT   NOT NULL,
    subject     TEXT   NOT NULL,
    recipient   TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    purpose     TEXT   NOT NULL,
    isa_id      TEXT   NOT NULL,
    outcome     TEXT   NOT NULL
);

-- Each search index ends in `seq` so a filtered page is an index range scan in seq order.
CREATE INDEX audit_entries_agency      ON audit_entries (agency, seq);
CREATE INDEX audit_entries_subject     ON audit_entries (subject, seq);
CREATE INDEX audit_entries_recipient   ON audit_entries (recipient, seq);
CREATE INDEX audit_entries_action      ON audit_entries (action, seq);
CREATE INDEX audit_entries_purpose     ON audit_entries (purpose, seq);
CREATE INDEX audit_entries_isa_id      ON audit_entries (isa_id, seq);
CREATE INDEX audit_entries_outcome     ON audit_entries (outcome, seq);
CREATE INDEX audit_entries_recorded_at ON audit_entries (recorded_at, seq);

-- The people whose records each entry consulted or disclosed.
CREATE TABLE audit_subjects (
    seq         BIGINT NOT NULL REFERENCES audit_entries (seq),
    subject_ref TEXT   NOT NULL,
    PRIMARY KEY (seq, subject_ref)
);

CREATE INDEX audit_subjects_subject_ref ON audit_subjects (subject_ref, seq);

-- One row: how many entries there are and the chain hash after the last one. Appenders in every
-- gateway process lock this row (SELECT ... FOR UPDATE) to serialise; verify compares it with
-- the entries so truncation is detected.
CREATE TABLE ledger_head (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    size       BIGINT   NOT NULL CHECK (size >= 0),
    chain_hash BYTEA    NOT NULL CHECK (octet_length(chain_hash) = 32)
);

INSERT INTO ledger_head (id, size, chain_hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- The ledger never rewrites an entry. These triggers stop accidents and casual edits; they do
-- not stop someone who can drop them, which is what the hashes are for.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are append-only';
END
$$;

CREATE TRIGGER audit_entries_append_only
    BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER audit_entries_no_truncate
    BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER audit_subjects_append_only
    BEFORE UPDATE OR DELETE ON audit_subjects
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER audit_subjects_no_truncate
    BEFORE TRUNCATE ON audit_subjects
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
