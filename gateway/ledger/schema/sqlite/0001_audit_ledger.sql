-- The audit ledger (SQLite). Applied once, inside the schema transaction, by the ledger itself.
--
-- `seq` is assigned by the appender inside the same transaction that updates `ledger_head`, so it
-- is dense: 1, 2, 3, ... with no gaps. `recorded_at` is nanoseconds since the Unix epoch, UTC,
-- which round-trips the caller's timestamp exactly on both backends.

CREATE TABLE audit_entries (
    seq         INTEGER PRIMARY KEY CHECK (seq > 0),
    entry_id    TEXT    NOT NULL UNIQUE,
    recorded_at INTEGER NOT NULL,
    body        BLOB    NOT NULL,
    leaf_hash   BLOB    NOT NULL CHECK (length(leaf_hash) = 32),
    chain_hash  BLOB    NOT NULL CHECK (length(chain_hash) = 32),
    -- Search columns: copies of fields of the body, not hashed.
    agency      TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    recipient   TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    purpose     TEXT    NOT NULL,
    isa_id      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL
) STRICT;

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
    seq         INTEGER NOT NULL REFERENCES audit_entries (seq),
    subject_ref TEXT    NOT NULL,
    PRIMARY KEY (seq, subject_ref)
) STRICT, WITHOUT ROWID;

CREATE INDEX audit_subjects_subject_ref ON audit_subjects (subject_ref, seq);

-- One row: how many entries there are and the chain hash after the last one. Appenders lock
-- this row to serialise; verify compares it with the entries so truncation is detected.
CREATE TABLE ledger_head (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    size       INTEGER NOT NULL CHECK (size >= 0),
    chain_hash BLOB    NOT NULL CHECK (length(chain_hash) = 32)
) STRICT;

INSERT INTO ledger_head (id, size, chain_hash) VALUES (1, 0, zeroblob(32));

-- The ledger never rewrites an entry. These triggers stop accidents and casual edits; they do
-- not stop someone who can drop them, which is what the hashes are for.
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER audit_subjects_no_update BEFORE UPDATE ON audit_subjects
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER audit_subjects_no_delete BEFORE DELETE ON audit_subjects
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;
