-- Member-code keys (see sqlite_003.sql); idempotent.
CREATE TABLE IF NOT EXISTS code_keys (
    id         BIGINT PRIMARY KEY CHECK (id >= 0),
    master     BYTEA  CHECK (master IS NULL OR length(master) = 32),
    created_at BIGINT NOT NULL,
    retired_at BIGINT,
    CHECK ((id = 0) = (master IS NULL))
);
