-- The program the till runs; every change is a new version, the highest is current.
CREATE TABLE program (
    version      INTEGER PRIMARY KEY,
    toml         TEXT    NOT NULL,
    installed_at INTEGER NOT NULL
) STRICT;

-- This till's identity and the last sequence number it gave an entry.
CREATE TABLE terminal (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    terminal_id TEXT    NOT NULL,
    last_seq    INTEGER NOT NULL CHECK (last_seq >= 0)
) STRICT;

CREATE TABLE members (
    id                BLOB    PRIMARY KEY,
    card              TEXT    NOT NULL UNIQUE,
    name              TEXT    NOT NULL,
    phone             TEXT    UNIQUE,
    email             TEXT    UNIQUE,
    birthday          TEXT,
    marketing_consent INTEGER NOT NULL CHECK (marketing_consent IN (0, 1)),
    created_at        INTEGER NOT NULL
) STRICT;

-- Lower-case name words for prefix search ("smi" finds "Jo Smith").
CREATE TABLE member_name_tokens (
    token     TEXT NOT NULL,
    member_id BLOB NOT NULL REFERENCES members (id),
    PRIMARY KEY (token, member_id)
) STRICT, WITHOUT ROWID;

-- The append-only points ledger, clustered by member so that one member's entries (read on
-- every scan and folded on every write) share a page or two. `id` is global; `seq` is this
-- store's arrival order (1, 2, 3 ...).
CREATE TABLE ledger (
    member_id    BLOB    NOT NULL REFERENCES members (id),
    occurred_at  INTEGER NOT NULL,
    id           BLOB    NOT NULL UNIQUE,
    seq          INTEGER NOT NULL UNIQUE CHECK (seq >= 1),
    terminal_id  TEXT    NOT NULL,
    terminal_seq INTEGER NOT NULL CHECK (terminal_seq >= 1),
    kind         TEXT    NOT NULL CHECK (kind IN ('earn', 'redeem', 'reverse', 'adjust', 'expire',
                                                  'welcome_bonus', 'birthday_bonus')),
    points       INTEGER NOT NULL,
    amount_minor INTEGER,
    currency     TEXT,
    reward_id    TEXT,
    reverses     BLOB    UNIQUE REFERENCES ledger (id),
    note         TEXT,
    actor        TEXT    NOT NULL,
    PRIMARY KEY (member_id, occurred_at, id),
    UNIQUE (terminal_id, terminal_seq)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable: write a reversal instead');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable: write a reversal instead');
END;

-- Derived from the ledger, rebuilt by `verify --repair`; never the only truth.
CREATE TABLE member_state (
    member_id        BLOB    PRIMARY KEY REFERENCES members (id),
    balance          INTEGER NOT NULL,
    qualifying       INTEGER NOT NULL,
    tier             INTEGER NOT NULL,
    as_of            INTEGER NOT NULL,
    last_activity_at INTEGER,
    entry_count      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX member_state_tier ON member_state (tier, qualifying);
