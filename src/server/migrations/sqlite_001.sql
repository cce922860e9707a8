-- The central server's store (SQLite flavour). Members and entries share one counter,
-- server_seq, so a pull cursor covers both; entries are never updated or deleted.
CREATE TABLE server_seq (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    last      INTEGER NOT NULL
) STRICT;
INSERT INTO server_seq (singleton, last) VALUES (1, 0);

CREATE TABLE program (
    version      INTEGER PRIMARY KEY,
    toml         TEXT    NOT NULL,
    code_key     BLOB    NOT NULL CHECK (length(code_key) = 32),
    installed_at INTEGER NOT NULL
) STRICT;

CREATE TABLE terminals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    -- SHA-256 (hex) of the token; the token itself is shown once and never stored.
    token_hash  TEXT    NOT NULL UNIQUE,
    -- The till's own id, bound on its first request.
    terminal_id TEXT    UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;

-- Each member's current version (for uniqueness checks, balances and listings).
CREATE TABLE members (
    id      BLOB    PRIMARY KEY,
    version INTEGER NOT NULL,
    card    TEXT    NOT NULL UNIQUE,
    phone   TEXT    UNIQUE,
    email   TEXT    UNIQUE,
    -- The MemberRecord as JSON.
    body    TEXT    NOT NULL
) STRICT;

-- Every version of every member, appended with its own server_seq and served to pulls: a
-- member's first version always precedes its entries, whatever later versions do.
CREATE TABLE member_versions (
    server_seq INTEGER PRIMARY KEY,
    member_id  BLOB    NOT NULL REFERENCES members (id),
    body       TEXT    NOT NULL
) STRICT;

CREATE TABLE entries (
    server_seq  INTEGER PRIMARY KEY,
    id          BLOB    NOT NULL UNIQUE,
    member_id   BLOB    NOT NULL REFERENCES members (id),
    terminal_id TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    points      INTEGER NOT NULL,
    reverses    BLOB    UNIQUE,
    -- The Entry as canonical JSON: what a retry is compared with, and what pulls serve.
    body        TEXT    NOT NULL
) STRICT;

CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable');
END;

CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are immutable');
END;

-- Sum of each member's entries, kept in the push transaction (derived; entries are the truth).
CREATE TABLE balances (
    member_id BLOB    PRIMARY KEY,
    balance   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE double_spends (
    entry_id      BLOB    NOT NULL UNIQUE,
    member_id     BLOB    NOT NULL,
    terminal_id   TEXT    NOT NULL,
    occurred_at   INTEGER NOT NULL,
    points        INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    detected_at   INTEGER NOT NULL
) STRICT;
