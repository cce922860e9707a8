-- Member-code keys: key 0 is the program's code_key (no master here); keys added by
-- `key rotate` have a master, of which tills get only the member-code derivation (the pass
-- web-service key derived from it stays on the server). A retired key's codes are refused.
CREATE TABLE code_keys (
    id         INTEGER PRIMARY KEY CHECK (id >= 0),
    master     BLOB    CHECK (master IS NULL OR length(master) = 32),
    created_at INTEGER NOT NULL,
    retired_at INTEGER,
    CHECK ((id = 0) = (master IS NULL))
) STRICT;
