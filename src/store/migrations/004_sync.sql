-- Sync with the central server: member records carry a version (milliseconds of their last
-- change; the higher version wins everywhere), members changed here wait in an outbox until the
-- server acknowledges them, and this till's entries are pushed in terminal_seq order.
ALTER TABLE members ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
UPDATE members SET version = created_at;

CREATE TABLE member_outbox (
    member_id BLOB PRIMARY KEY REFERENCES members (id)
) STRICT, WITHOUT ROWID;

INSERT INTO member_outbox (member_id) SELECT id FROM members;

CREATE TABLE sync_state (
    singleton       INTEGER PRIMARY KEY CHECK (singleton = 1),
    server_url      TEXT,
    token           TEXT,
    -- The server_seq this till has applied everything up to.
    pull_cursor     INTEGER NOT NULL DEFAULT 0 CHECK (pull_cursor >= 0),
    -- This till's entries with terminal_seq up to here are on the server.
    pushed_seq      INTEGER NOT NULL DEFAULT 0 CHECK (pushed_seq >= 0),
    -- The server's program version installed here (0: none yet).
    program_version INTEGER NOT NULL DEFAULT 0,
    last_success    INTEGER,
    last_error      TEXT
) STRICT;

INSERT INTO sync_state (singleton) VALUES (1);

CREATE INDEX member_state_balance ON member_state (balance);
