-- Member-code keys added since key 0 (`tillpass-server key rotate`), as the server derived them
-- for member codes: new codes use the current one, old codes verify under any held key, and a
-- retired key is dropped (its codes are refused). Key 0 stays in secrets.
CREATE TABLE code_keys (
    id     INTEGER PRIMARY KEY CHECK (id >= 1),
    secret BLOB    NOT NULL CHECK (length(secret) = 32)
) STRICT;

ALTER TABLE sync_state ADD COLUMN code_key_current INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_state ADD COLUMN code_key0_retired INTEGER NOT NULL DEFAULT 0
    CHECK (code_key0_retired IN (0, 1));
