-- The report counted every member's digest each time: 0.65 s on a store of a million members.
-- What the digests add up to, kept by day (domain::insights::Totals): when a member's digest is
-- made again, what the old one added is taken off and what the new one adds is added, in the
-- same transaction. Derived like the digests, never the only truth: `verify` sums every
-- member's entries again and compares.
CREATE TABLE report_totals (
    sum INTEGER NOT NULL,
    at  INTEGER NOT NULL,
    of  INTEGER NOT NULL,
    n   INTEGER NOT NULL,
    PRIMARY KEY (sum, at, of)
) STRICT, WITHOUT ROWID;

-- Each member as the totals count them: their enrolment and consent then, and their last
-- purchase that stood, read for who is at risk of leaving. (Its index on the last purchase, and
-- report_tier_changes' on time, are built by the store after it makes every record: see
-- RECORD_INDEXES in src/store/digests.rs.)
CREATE TABLE report_members (
    member_id   BLOB PRIMARY KEY REFERENCES members (id),
    enrolled_at INTEGER NOT NULL,
    consent     INTEGER NOT NULL CHECK (consent IN (0, 1)),
    last_sale   INTEGER
) STRICT, WITHOUT ROWID;

-- Each change of a member's tier, with their enrolment as counted, read in time order for the
-- members who moved up or down in a period.
CREATE TABLE report_tier_changes (
    member_id   BLOB    NOT NULL REFERENCES members (id),
    at          INTEGER NOT NULL,
    tier_before INTEGER NOT NULL,
    tier_after  INTEGER NOT NULL,
    enrolled_at INTEGER NOT NULL,
    PRIMARY KEY (member_id, at)
) STRICT, WITHOUT ROWID;

-- Members up to this rowid are counted (members are never deleted, so a new one has a higher
-- rowid); no member counted enrolled after `latest_enrolled`.
ALTER TABLE report_digest_state ADD COLUMN members_rowid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE report_digest_state ADD COLUMN latest_enrolled INTEGER;

-- A member's consent is part of their record for who is at risk: a change counts them again.
CREATE TRIGGER members_consent_report_digest AFTER UPDATE OF marketing_consent ON members
WHEN OLD.marketing_consent IS NOT NEW.marketing_consent
BEGIN
    INSERT OR IGNORE INTO report_digest_stale (member_id) VALUES (NEW.id);
END;
