-- The manager's report read every ledger entry each time: 12 s on a store of a million members.
-- Each member's entries reduced to what the report counts (domain::insights::Digest), derived
-- from the ledger like member_state and never the only truth: `verify` compares each with the
-- member's entries. Brought up to date when a report is asked for, from the entries that
-- arrived since (arrival numbers above `seq`), so no sale pays for it.
CREATE TABLE report_digests (
    member_id BLOB PRIMARY KEY REFERENCES members (id),
    digest    BLOB NOT NULL
) STRICT, WITHOUT ROWID;

-- Every entry numbered up to `seq` is in the digests, made under the program whose TOML has the
-- SHA-256 `program` (NULL: not made yet). No entry is stamped after `latest_at`: the digests
-- answer periods ending after it.
CREATE TABLE report_digest_state (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    program   TEXT,
    seq       INTEGER NOT NULL DEFAULT 0,
    latest_at INTEGER
) STRICT;
INSERT INTO report_digest_state (singleton) VALUES (1);

-- Members whose digest still counts an entry that left the ledger (the one delete it allows).
-- The arrival number it had may be given again, so the watermark steps back below it.
CREATE TABLE report_digest_stale (
    member_id BLOB PRIMARY KEY
) STRICT, WITHOUT ROWID;

CREATE TRIGGER ledger_delete_report_digest AFTER DELETE ON ledger
BEGIN
    INSERT OR IGNORE INTO report_digest_stale (member_id) VALUES (OLD.member_id);
    UPDATE report_digest_state SET seq = MIN(seq, OLD.seq - 1);
END;

-- Members in id order with what the report needs of them, without reading their records.
CREATE INDEX members_report ON members (id, created_at, marketing_consent);
