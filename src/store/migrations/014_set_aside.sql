-- A till put back to an older copy of its file may write, before it next syncs, an entry that
-- what the server already holds from it rules out: a second reversal of an entry whose reversal
-- it had pushed before the copy was put back. That entry was never pushed and cannot stand; it
-- leaves the ledger for the quarantine, which keeps it with the reason. This is the one delete
-- the ledger allows: an entry this till made, never pushed, and already kept in the quarantine.
DROP TRIGGER ledger_no_delete;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
WHEN NOT (
    OLD.terminal_id = (SELECT terminal_id FROM terminal)
    AND OLD.terminal_seq > (SELECT pushed_seq FROM sync_state)
    AND EXISTS (
        SELECT 1 FROM quarantine
        WHERE kind = 'entry'
          AND record = 'entry:' || lower(
              substr(hex(OLD.id), 1, 8) || '-' || substr(hex(OLD.id), 9, 4) || '-'
              || substr(hex(OLD.id), 13, 4) || '-' || substr(hex(OLD.id), 17, 4) || '-'
              || substr(hex(OLD.id), 21, 12))
    )
)
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable: write a reversal instead');
END;
