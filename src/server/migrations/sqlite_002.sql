-- The server as the program's authority (issue 10).

-- Each entry's number in its till's gapless sequence, as a column: one entry per till and
-- number, so a till restored from an older copy cannot store a second entry under a number.
ALTER TABLE entries ADD COLUMN terminal_seq INTEGER NOT NULL DEFAULT 0;
-- The one backfill of ledger rows, from each stored body: the immutability trigger is lifted
-- for it alone and restored at once, in this migration's transaction.
DROP TRIGGER entries_no_update;
UPDATE entries SET terminal_seq = json_extract(body, '$.terminal_seq');
CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable');
END;
CREATE UNIQUE INDEX entries_terminal_seq ON entries (terminal_id, terminal_seq);
-- Histories are fetched per member to judge bonuses, expiry and redemptions.
CREATE INDEX entries_member ON entries (member_id);

-- The till that made each member version (NULL for versions stored before this migration).
ALTER TABLE member_versions ADD COLUMN terminal_id TEXT;

-- This database's epoch: a random id made when it is created, so a till notices a server
-- restored from a backup or replaced.
CREATE TABLE server_meta (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    epoch     TEXT    NOT NULL
) STRICT;

-- Outside the ledger: entries an honest offline till could write but a manager should see.
CREATE TABLE flags (
    entry_id    BLOB    NOT NULL,
    member_id   BLOB    NOT NULL,
    terminal_id TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    -- The UTC day of occurred_at, YYYY-MM-DD.
    day         TEXT    NOT NULL,
    flag        TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    detected_at INTEGER NOT NULL,
    PRIMARY KEY (entry_id, flag)
) STRICT;
CREATE INDEX flags_detected ON flags (detected_at);

-- Outside the ledger: pushes the server refused (nothing of them was stored).
CREATE TABLE refusals (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    terminal_id TEXT    NOT NULL,
    entry_id    BLOB,
    rule        TEXT    NOT NULL,
    detail      TEXT    NOT NULL
) STRICT;
CREATE INDEX refusals_at ON refusals (at);
