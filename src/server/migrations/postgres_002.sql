-- The server as the program's authority (issue 10); idempotent, run at every start after
-- postgres_001.sql in the same transaction, under the push lock.

-- Each entry's number in its till's gapless sequence, as a column: one entry per till and
-- number, so a till restored from an older copy cannot store a second entry under a number.
ALTER TABLE entries ADD COLUMN IF NOT EXISTS terminal_seq BIGINT;
-- The one backfill of ledger rows, from each stored body: the immutability trigger is lifted
-- for it alone and restored at once, in this transaction.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM entries WHERE terminal_seq IS NULL) THEN
        ALTER TABLE entries DISABLE TRIGGER entries_no_change;
        UPDATE entries SET terminal_seq = (body::jsonb ->> 'terminal_seq')::bigint
        WHERE terminal_seq IS NULL;
        ALTER TABLE entries ENABLE TRIGGER entries_no_change;
    END IF;
END $$;
ALTER TABLE entries ALTER COLUMN terminal_seq SET NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS entries_terminal_seq ON entries (terminal_id, terminal_seq);
-- Histories are fetched per member to judge bonuses, expiry and redemptions.
CREATE INDEX IF NOT EXISTS entries_member ON entries (member_id);

-- The till that made each member version (NULL for versions stored before this migration).
ALTER TABLE member_versions ADD COLUMN IF NOT EXISTS terminal_id TEXT;

-- This database's epoch: a random id made when it is created, so a till notices a server
-- restored from a backup or replaced.
CREATE TABLE IF NOT EXISTS server_meta (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    epoch     TEXT    NOT NULL
);

-- Outside the ledger: entries an honest offline till could write but a manager should see.
CREATE TABLE IF NOT EXISTS flags (
    entry_id    UUID   NOT NULL,
    member_id   UUID   NOT NULL,
    terminal_id TEXT   NOT NULL,
    occurred_at BIGINT NOT NULL,
    -- The UTC day of occurred_at, YYYY-MM-DD.
    day         TEXT   NOT NULL,
    flag        TEXT   NOT NULL,
    detail      TEXT   NOT NULL,
    detected_at BIGINT NOT NULL,
    PRIMARY KEY (entry_id, flag)
);
CREATE INDEX IF NOT EXISTS flags_detected ON flags (detected_at);

-- Outside the ledger: pushes the server refused (nothing of them was stored).
CREATE TABLE IF NOT EXISTS refusals (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    terminal_id TEXT   NOT NULL,
    entry_id    UUID,
    rule        TEXT   NOT NULL,
    detail      TEXT   NOT NULL
);
CREATE INDEX IF NOT EXISTS refusals_at ON refusals (at);
