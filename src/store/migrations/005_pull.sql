-- Members whose cached state waits to be recomputed after a bulk pull. Pulled pages only list
-- the members they touched; the state is refreshed once when the pull has caught up (or at the
-- next open), so catching up on a million entries folds each member once, not once per page.
-- member_state equals the fold of the member's entries unless the member is listed here.
CREATE TABLE member_state_stale (
    member_id BLOB    PRIMARY KEY REFERENCES members (id),
    -- The latest occurred_at among the entries that made it stale (the refresh's as_of floor).
    at        INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
