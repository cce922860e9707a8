-- Sales without a member and answers to the recommend question, as tills push them, for the
-- chain report. No personal data; insert-if-absent by id, never changed.
CREATE TABLE IF NOT EXISTS guest_sales (
    id           uuid    PRIMARY KEY,
    terminal_id  text    NOT NULL,
    occurred_at  bigint  NOT NULL,
    amount_minor bigint  NOT NULL CHECK (amount_minor > 0)
);

CREATE TABLE IF NOT EXISTS recommend_answers (
    id          uuid     PRIMARY KEY,
    terminal_id text     NOT NULL,
    occurred_at bigint   NOT NULL,
    score       smallint NOT NULL CHECK (score BETWEEN 0 AND 10),
    member_id   uuid
);
