-- Wrong manager PINs in a row, and until when the PIN is not even checked: the limit holds
-- across the app and every command-line process on this till.
CREATE TABLE pin_attempts (
    singleton    INTEGER PRIMARY KEY CHECK (singleton = 1),
    failures     INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_until INTEGER NOT NULL DEFAULT 0
) STRICT;

INSERT INTO pin_attempts (singleton) VALUES (1);
