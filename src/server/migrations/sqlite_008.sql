-- The chain report parsed every entry's JSON each time: 3 s on a million entries. Each member's
-- record for the report and the totals by day the records add up to, in the till's table
-- shapes (its migrations 020-021, read and written by the same code, store::records): derived
-- from the entries and member versions up to `last_seq`, under the program whose hash is
-- `program`, and brought up to date when a report is asked for. Never the only truth.
CREATE TABLE report_digests (
    member_id BLOB PRIMARY KEY REFERENCES members (id),
    digest    BLOB NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE report_members (
    member_id   BLOB PRIMARY KEY REFERENCES members (id),
    enrolled_at INTEGER NOT NULL,
    consent     INTEGER NOT NULL CHECK (consent IN (0, 1)),
    last_sale   INTEGER
) STRICT, WITHOUT ROWID;

CREATE TABLE report_tier_changes (
    member_id   BLOB    NOT NULL REFERENCES members (id),
    at          INTEGER NOT NULL,
    tier_before INTEGER NOT NULL,
    tier_after  INTEGER NOT NULL,
    enrolled_at INTEGER NOT NULL,
    PRIMARY KEY (member_id, at)
) STRICT, WITHOUT ROWID;

CREATE TABLE report_totals (
    sum INTEGER NOT NULL,
    at  INTEGER NOT NULL,
    of  INTEGER NOT NULL,
    n   INTEGER NOT NULL,
    PRIMARY KEY (sum, at, of)
) STRICT, WITHOUT ROWID;

-- No entry counted is stamped after `latest_at`, no member counted enrolled after
-- `latest_enrolled`: the totals answer periods ending after both.
CREATE TABLE report_state (
    singleton       INTEGER PRIMARY KEY CHECK (singleton = 1),
    program         TEXT,
    last_seq        INTEGER NOT NULL DEFAULT 0,
    latest_at       INTEGER,
    latest_enrolled INTEGER
) STRICT;
INSERT INTO report_state (singleton) VALUES (1);
