-- A sale's basket lines (JSON, as on the wire), NULL for a typed amount and every other kind
-- (a return's: the lines it brings back); stamps earned or spent by card (JSON), NULL when none. Immutable like the rest of the row:
-- the update trigger gains the columns.
ALTER TABLE ledger ADD COLUMN lines TEXT;
ALTER TABLE ledger ADD COLUMN stamps TEXT;
-- The sale a return brings back part of.
ALTER TABLE ledger ADD COLUMN returns BLOB;
CREATE INDEX ledger_returns ON ledger (returns) WHERE returns IS NOT NULL;

DROP TRIGGER ledger_no_update;
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

-- The integration API's bearer token (made at first use; `tillpass pos-token` shows it).
ALTER TABLE terminal ADD COLUMN pos_token TEXT;

-- Offers given, for re-engagement results.
CREATE INDEX ledger_offers ON ledger (reward_id) WHERE kind = 'offer_unlocked';

-- Badge awards by member, to find a badge two tills awarded apart.
CREATE INDEX ledger_badges ON ledger (member_id, reward_id) WHERE kind = 'badge_awarded';

-- Donations by cause, for the manager's totals.
CREATE INDEX ledger_donations ON ledger (reward_id) WHERE kind = 'donation';
