-- The ledger without a fixed list of kinds: each kind is checked where entries are made and
-- read (EntryKind), and new kinds (opening balances, and those to come) need no rebuild. The
-- rows move unchanged; the table is rebuilt once because SQLite cannot drop a CHECK.
CREATE TABLE ledger_rebuilt (
    member_id    BLOB    NOT NULL REFERENCES members (id),
    occurred_at  INTEGER NOT NULL,
    id           BLOB    NOT NULL UNIQUE,
    seq          INTEGER NOT NULL UNIQUE CHECK (seq >= 1),
    terminal_id  TEXT    NOT NULL,
    terminal_seq INTEGER NOT NULL CHECK (terminal_seq >= 1),
    kind         TEXT    NOT NULL CHECK (length(kind) BETWEEN 1 AND 40),
    points       INTEGER NOT NULL,
    amount_minor INTEGER,
    currency     TEXT,
    reward_id    TEXT,
    reverses     BLOB    UNIQUE REFERENCES ledger_rebuilt (id),
    note         TEXT,
    actor        TEXT    NOT NULL,
    PRIMARY KEY (member_id, occurred_at, id),
    UNIQUE (terminal_id, terminal_seq)
) STRICT, WITHOUT ROWID;

INSERT INTO ledger_rebuilt (member_id, occurred_at, id, seq, terminal_id, terminal_seq, kind,
                            points, amount_minor, currency, reward_id, reverses, note, actor)
SELECT member_id, occurred_at, id, seq, terminal_id, terminal_seq, kind, points, amount_minor,
       currency, reward_id, reverses, note, actor
FROM ledger ORDER BY member_id, occurred_at, id;

DROP TABLE ledger;
ALTER TABLE ledger_rebuilt RENAME TO ledger;

-- The same triggers as before (006): nothing of a row ever changes, except the push-queue
-- number of an entry this till made and has not pushed yet.
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

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable: write a reversal instead');
END;
