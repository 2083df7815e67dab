-- The parties to each share, break-glass in the index, faster searches, and s.45 restrictions
-- (SQLite).

-- The providing agency (whose data the entry concerns) and whether emergency access was invoked:
-- search columns like the others, copied from the body and not hashed. Entries recorded before
-- this step hold the defaults until the gateway fills them in from their bodies (the ledger cannot
-- read a body), which the trigger below allows once, for those entries only.
ALTER TABLE audit_entries ADD COLUMN provider TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_entries ADD COLUMN break_glass INTEGER NOT NULL DEFAULT 0
    CHECK (break_glass IN (0, 1));

-- Entries 1..=end_seq predate the columns above; those before next_seq have been filled in.
CREATE TABLE ledger_index_backfill (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    next_seq INTEGER NOT NULL CHECK (next_seq >= 1),
    end_seq  INTEGER NOT NULL CHECK (end_seq >= 0)
) STRICT;

INSERT INTO ledger_index_backfill (id, next_seq, end_seq) SELECT 1, 1, size FROM ledger_head;

-- Every column of an entry stays as written; the two new search columns may be written once, for
-- entries older than them, while they still hold their defaults.
DROP TRIGGER audit_entries_no_update;

CREATE TRIGGER audit_entries_no_update
BEFORE UPDATE OF seq, entry_id, recorded_at, body, leaf_hash, chain_hash, agency, subject,
                 recipient, action, purpose, isa_id, outcome ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

CREATE TRIGGER audit_entries_backfill_once
BEFORE UPDATE OF provider, break_glass ON audit_entries
WHEN OLD.seq > (SELECT end_seq FROM ledger_index_backfill WHERE id = 1)
  OR OLD.provider <> '' OR OLD.break_glass <> 0
BEGIN
    SELECT RAISE(ABORT, 'audit entries are append-only');
END;

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
-- reserved (committed = 0) before its ledger entry is appended and committed after, so a
-- restriction whose append failed is never honoured. Lifting marks the rows; nothing restricted
-- is ever an audit entry changed.
CREATE TABLE entry_restrictions (
    restriction_id TEXT    PRIMARY KEY,
    seq            INTEGER NOT NULL,
    until_at       INTEGER NOT NULL,
    reason         TEXT    NOT NULL,
    agency         TEXT    NOT NULL,
    restricted_by  TEXT    NOT NULL,
    recorded_at    INTEGER NOT NULL,
    committed      INTEGER NOT NULL DEFAULT 0 CHECK (committed IN (0, 1)),
    lifted_by      TEXT
) STRICT;

CREATE INDEX entry_restrictions_seq ON entry_restrictions (seq);
