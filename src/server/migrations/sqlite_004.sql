-- Sales without a member and answers to the recommend question, as tills push them, for the
-- chain report. No personal data; insert-if-absent by id, never changed.
CREATE TABLE guest_sales (
    id           BLOB    PRIMARY KEY,
    terminal_id  TEXT    NOT NULL,
    occurred_at  INTEGER NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0)
) STRICT;

CREATE TABLE recommend_answers (
    id          BLOB    PRIMARY KEY,
    terminal_id TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    score       INTEGER NOT NULL CHECK (score BETWEEN 0 AND 10),
    member_id   BLOB
) STRICT;
