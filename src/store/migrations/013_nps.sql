-- "How likely are you to recommend us?" answered 0 to 10 after a sale, by a member or a guest
-- (no personal data then). Append-only.
CREATE TABLE nps_answers (
    id          BLOB    PRIMARY KEY,
    occurred_at INTEGER NOT NULL,
    score       INTEGER NOT NULL CHECK (score BETWEEN 0 AND 10),
    member_id   BLOB    REFERENCES members (id),
    terminal_id TEXT    NOT NULL
) STRICT;

CREATE INDEX nps_answers_at ON nps_answers (occurred_at);

CREATE TRIGGER nps_answers_no_update BEFORE UPDATE ON nps_answers
BEGIN
    SELECT RAISE(ABORT, 'answers are immutable');
END;

CREATE TRIGGER nps_answers_no_delete BEFORE DELETE ON nps_answers
BEGIN
    SELECT RAISE(ABORT, 'answers are immutable');
END;
