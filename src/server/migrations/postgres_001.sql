-- The central server's store (PostgreSQL flavour); idempotent, run at every start under the
-- push lock. Members and entries share one counter, server_seq, so a pull cursor covers both.
CREATE TABLE IF NOT EXISTS server_seq (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    last      BIGINT  NOT NULL
);
INSERT INTO server_seq (singleton, last) VALUES (TRUE, 0) ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS program (
    version      BIGINT PRIMARY KEY,
    toml         TEXT   NOT NULL,
    code_key     BYTEA  NOT NULL CHECK (length(code_key) = 32),
    installed_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS terminals (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT   NOT NULL,
    token_hash  TEXT   NOT NULL UNIQUE,
    terminal_id TEXT   UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE IF NOT EXISTS members (
    id      UUID   PRIMARY KEY,
    version BIGINT NOT NULL,
    card    TEXT   NOT NULL UNIQUE,
    phone   TEXT   UNIQUE,
    email   TEXT   UNIQUE,
    body    TEXT   NOT NULL
);

-- Every version of every member with its own server_seq: what pulls serve.
CREATE TABLE IF NOT EXISTS member_versions (
    server_seq BIGINT PRIMARY KEY,
    member_id  UUID   NOT NULL REFERENCES members (id),
    body       TEXT   NOT NULL
);

CREATE TABLE IF NOT EXISTS entries (
    server_seq  BIGINT PRIMARY KEY,
    id          UUID   NOT NULL UNIQUE,
    member_id   UUID   NOT NULL REFERENCES members (id),
    terminal_id TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    points      BIGINT NOT NULL,
    reverses    UUID   UNIQUE,
    body        TEXT   NOT NULL
);

CREATE OR REPLACE FUNCTION entries_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are immutable';
END $$;

DROP TRIGGER IF EXISTS entries_no_change ON entries;
CREATE TRIGGER entries_no_change BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION entries_immutable();

CREATE TABLE IF NOT EXISTS balances (
    member_id UUID   PRIMARY KEY,
    balance   BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS double_spends (
    id            BIGSERIAL PRIMARY KEY,
    entry_id      UUID   NOT NULL UNIQUE,
    member_id     UUID   NOT NULL,
    terminal_id   TEXT   NOT NULL,
    occurred_at   BIGINT NOT NULL,
    points        BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    detected_at   BIGINT NOT NULL
);
