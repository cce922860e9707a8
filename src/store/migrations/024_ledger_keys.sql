-- The ledger's unique keys as indexes of their own, and `reverses` unique only where it is set.
-- The inline UNIQUE on `reverses` kept an index row for every entry, NULLs included, ordered
-- after the NULL by the table's key (the member): a second B-tree as scattered as the table,
-- taken by every sale and every pulled entry. SQLite cannot drop an inline constraint, so the
-- table is rebuilt once: the rows move unchanged, in key order, and the other keys are built
-- after them, each in one sorted pass. The checks stay what they were: an id, an arrival
-- number, a till's sequence number and a reversal's target each at most once. Foreign keys are
-- off while it runs (`schema::migrate`) and every reference is checked before its commit.

CREATE TABLE ledger_rebuilt (
    member_id    BLOB    NOT NULL REFERENCES members (id),
    occurred_at  INTEGER NOT NULL,
    id           BLOB    NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq >= 1),
    terminal_id  TEXT    NOT NULL,
    terminal_seq INTEGER NOT NULL CHECK (terminal_seq >= 1),
    kind         TEXT    NOT NULL CHECK (length(kind) BETWEEN 1 AND 40),
    points       INTEGER NOT NULL,
    amount_minor INTEGER,
    currency     TEXT,
    reward_id    TEXT,
    reverses     BLOB    REFERENCES ledger_rebuilt (id),
    note         TEXT,
    actor        TEXT    NOT NULL,
    lines        TEXT,
    stamps       TEXT,
    returns      BLOB,
    PRIMARY KEY (member_id, occurred_at, id)
) STRICT, WITHOUT ROWID;

INSERT INTO ledger_rebuilt (member_id, occurred_at, id, seq, terminal_id, terminal_seq, kind,
                            points, amount_minor, currency, reward_id, reverses, note, actor,
                            lines, stamps, returns)
SELECT member_id, occurred_at, id, seq, terminal_id, terminal_seq, kind, points, amount_minor,
       currency, reward_id, reverses, note, actor, lines, stamps, returns
FROM ledger ORDER BY member_id, occurred_at, id;

DROP TABLE ledger;
ALTER TABLE ledger_rebuilt RENAME TO ledger;

CREATE UNIQUE INDEX ledger_id ON ledger (id);
CREATE UNIQUE INDEX ledger_seq ON ledger (seq);
CREATE UNIQUE INDEX ledger_terminal_seq ON ledger (terminal_id, terminal_seq);
CREATE UNIQUE INDEX ledger_reverses ON ledger (reverses) WHERE reverses IS NOT NULL;

-- The lookups of 016, 017 and 019, as they were.
CREATE INDEX ledger_returns ON ledger (returns) WHERE returns IS NOT NULL;
CREATE INDEX ledger_offers ON ledger (reward_id) WHERE kind = 'offer_unlocked';
CREATE INDEX ledger_badges ON ledger (member_id, reward_id) WHERE kind = 'badge_awarded';
CREATE INDEX ledger_donations ON ledger (reward_id) WHERE kind = 'donation';
CREATE INDEX ledger_referrals ON ledger (member_id, reward_id) WHERE kind = 'referral_bonus';
CREATE INDEX ledger_partner_lines ON ledger (member_id, reward_id, note) WHERE kind = 'partner_earn';

-- The triggers of 016 (nothing of a row changes but an unpushed own entry's number), 014 (the
-- one delete: an own unpushed entry kept in the quarantine) and 020 (a delete's digest), as
-- they were.
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
WHEN NOT (
    NEW.id = OLD.id AND NEW.member_id = OLD.member_id AND NEW.occurred_at = OLD.occurred_at
    AND NEW.seq = OLD.seq AND NEW.terminal_id = OLD.terminal_id AND NEW.kind = OLD.kind
    AND NEW.points = OLD.points AND NEW.amount_minor IS OLD.amount_minor
    AND NEW.currency IS OLD.currency AND NEW.reward_id IS OLD.reward_id
    AND NEW.reverses IS OLD.reverses AND NEW.note IS OLD.note AND NEW.actor = OLD.actor
    AND NEW.lines IS OLD.lines AND NEW.stamps IS OLD.stamps AND NEW.returns IS OLD.returns
    AND OLD.terminal_id = (SELECT terminal_id FROM terminal)
    AND OLD.terminal_seq > (SELECT pushed_seq FROM sync_state)
    AND NEW.terminal_seq > (SELECT pushed_seq FROM sync_state)
)
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable: write a reversal instead');
END;

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

CREATE TRIGGER ledger_delete_report_digest AFTER DELETE ON ledger
BEGIN
    INSERT OR IGNORE INTO report_digest_stale (member_id) VALUES (OLD.member_id);
    UPDATE report_digest_state SET seq = MIN(seq, OLD.seq - 1);
END;
