-- The chain report parsed every entry's JSON each time: 3 s on a million entries. Each member's
-- record for the report and the totals by day the records add up to (as a till keeps them,
-- domain::insights::{Record, Totals}): derived from the entries and member versions up to
-- `last_seq`, under the program whose hash is `program`, and brought up to date when a report
-- is asked for. Never the only truth. No entry counted is stamped after `latest_at`, no member
-- counted enrolled after `latest_enrolled`: the totals answer periods ending after both.
CREATE TABLE IF NOT EXISTS report_digests (
    member_id UUID  PRIMARY KEY REFERENCES members (id),
    digest    BYTEA NOT NULL
);

CREATE TABLE IF NOT EXISTS report_members (
    member_id   UUID    PRIMARY KEY REFERENCES members (id),
    enrolled_at BIGINT  NOT NULL,
    consent     BOOLEAN NOT NULL,
    last_sale   BIGINT
);
CREATE INDEX IF NOT EXISTS report_members_last_sale ON report_members (last_sale)
    INCLUDE (member_id, consent) WHERE last_sale IS NOT NULL;

CREATE TABLE IF NOT EXISTS report_tier_changes (
    member_id   UUID   NOT NULL REFERENCES members (id),
    at          BIGINT NOT NULL,
    tier_before BIGINT NOT NULL,
    tier_after  BIGINT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    PRIMARY KEY (member_id, at)
);
CREATE INDEX IF NOT EXISTS report_tier_changes_at ON report_tier_changes (at)
    INCLUDE (member_id, tier_before, tier_after, enrolled_at);

CREATE TABLE IF NOT EXISTS report_totals (
    sum BIGINT NOT NULL,
    at  BIGINT NOT NULL,
    of  BIGINT NOT NULL,
    n   BIGINT NOT NULL,
    PRIMARY KEY (sum, at, of)
);

CREATE TABLE IF NOT EXISTS report_state (
    singleton       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    program         TEXT,
    last_seq        BIGINT  NOT NULL DEFAULT 0,
    latest_at       BIGINT,
    latest_enrolled BIGINT
);
INSERT INTO report_state (singleton) VALUES (TRUE) ON CONFLICT DO NOTHING;
