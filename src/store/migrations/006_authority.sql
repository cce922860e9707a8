-- The server is the program's authority (sync with several tills).
--
-- Program versions as the server installed them, with when: every pulled entry is judged by the
-- versions then in force, exactly as the server judges pushes.
CREATE TABLE server_programs (
    version      INTEGER PRIMARY KEY,
    installed_at INTEGER NOT NULL,
    toml         TEXT    NOT NULL
) STRICT;

-- Pulled records this till could not apply, set aside with the reason so sync never stops on
-- one record. Retried after each program update. Not part of the ledger.
CREATE TABLE quarantine (
    record    TEXT    PRIMARY KEY,  -- entry:<id> or member:<id>:<version>
    kind      TEXT    NOT NULL CHECK (kind IN ('entry', 'member')),
    body      TEXT    NOT NULL,     -- the record as the server sent it (JSON)
    reason    TEXT    NOT NULL,
    at        INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Which server database the cursor belongs to, and the record at the cursor: a server restored
-- from an older copy (another epoch, or another record at that number) is pulled again from 0.
ALTER TABLE sync_state ADD COLUMN epoch TEXT;
ALTER TABLE sync_state ADD COLUMN cursor_record TEXT;

-- Ledger rows stay immutable, with one exception: an entry this till made and has not pushed
-- yet may take a later terminal_seq. A till restored from an older copy of its file learns that
-- the server already holds its numbers from the lost entries; it takes those entries back and
-- numbers its unpushed ones after them. Nothing else of any row may ever change.
DROP TRIGGER ledger_no_update;
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
WHEN NOT (
    NEW.id = OLD.id AND NEW.member_id = OLD.member_id AND NEW.occurred_at = OLD.occurred_at
    AND NEW.seq = OLD.seq AND NEW.terminal_id = OLD.terminal_id AND NEW.kind = OLD.kind
    AND NEW.points = OLD.points AND NEW.amount_minor IS OLD.amount_minor
    AND NEW.currency IS OLD.currency AND NEW.reward_id IS OLD.reward_id
    AND NEW.reverses IS OLD.reverses AND NEW.note IS OLD.note AND NEW.actor = OLD.actor
    AND OLD.terminal_id = (SELECT terminal_id FROM terminal)
    AND OLD.terminal_seq > (SELECT pushed_seq FROM sync_state)
    AND NEW.terminal_seq > (SELECT pushed_seq FROM sync_state)
)
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable: write a reversal instead');
END;
