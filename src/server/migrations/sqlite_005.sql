-- Wallet passes the server issues and keeps live (issue 11). None of this is ledger data: links,
-- passes, registrations and queued pushes are updated and deleted as devices come and go.

-- A member's pass link: the SHA-256 of its unguessable token, revocable.
CREATE TABLE pass_links (
    token_hash TEXT    PRIMARY KEY,
    member_id  BLOB    NOT NULL REFERENCES members (id),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
CREATE INDEX pass_links_member ON pass_links (member_id);

-- One pass per card a member was given a link for; the serial number is the card number.
CREATE TABLE passes (
    serial     TEXT    PRIMARY KEY,
    member_id  BLOB    NOT NULL REFERENCES members (id),
    -- Milliseconds, strictly increasing by at least a second per change: the update tag and
    -- Last-Modified.
    updated_at INTEGER NOT NULL,
    -- A fingerprint of what the pass shows; a change of it is an update.
    shown      TEXT    NOT NULL,
    voided     INTEGER NOT NULL DEFAULT 0 CHECK (voided IN (0, 1))
) STRICT;
CREATE INDEX passes_member ON passes (member_id);

-- Devices that asked for updates of a pass (Apple's PassKit web service).
CREATE TABLE pass_registrations (
    device_id  TEXT    NOT NULL,
    pass_type  TEXT    NOT NULL,
    serial     TEXT    NOT NULL REFERENCES passes (serial),
    push_token TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, pass_type, serial)
) STRICT;
CREATE INDEX pass_registrations_serial ON pass_registrations (serial);

-- Pushes to send: one row per channel, pass and device (APNs push token; '' for Google),
-- coalesced while pending. `generation` grows with each change folded into a pending row, so a
-- change that lands while its push is in flight is sent again.
CREATE TABLE pass_pushes (
    id         INTEGER PRIMARY KEY,
    channel    TEXT    NOT NULL CHECK (channel IN ('apns', 'google')),
    serial     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    queued_at  INTEGER NOT NULL,
    due_at     INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    UNIQUE (channel, serial, target)
) STRICT;
CREATE INDEX pass_pushes_due ON pass_pushes (due_at);

-- How far (server_seq) the pass updater has looked at entries and member versions.
CREATE TABLE pass_cursor (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    last_seq  INTEGER NOT NULL
) STRICT;
INSERT INTO pass_cursor (singleton, last_seq) SELECT 1, last FROM server_seq;
