-- Secrets this till holds, e.g. the program's member-code key.
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

-- Card numbers that were replaced (lost card): their codes are refused as "card replaced".
CREATE TABLE retired_cards (
    card        TEXT    PRIMARY KEY,
    member_id   BLOB    NOT NULL REFERENCES members (id),
    retired_at  INTEGER NOT NULL,
    replaced_by TEXT    NOT NULL
) STRICT;

-- NFC tags (keyboard-mode readers type their UID) linked to members.
CREATE TABLE nfc_tags (
    uid       TEXT    PRIMARY KEY,
    member_id BLOB    NOT NULL REFERENCES members (id),
    linked_at INTEGER NOT NULL
) STRICT;

CREATE INDEX nfc_tags_member ON nfc_tags (member_id);
