-- Sales without a member: an amount and a time, no personal data. They let a manager compare
-- members with other customers. Append-only, like the ledger.
CREATE TABLE guest_sales (
    id           BLOB    PRIMARY KEY,
    occurred_at  INTEGER NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    currency     TEXT    NOT NULL,
    terminal_id  TEXT    NOT NULL,
    actor        TEXT    NOT NULL
) STRICT;

CREATE INDEX guest_sales_at ON guest_sales (occurred_at);

CREATE TRIGGER guest_sales_no_update BEFORE UPDATE ON guest_sales
BEGIN
    SELECT RAISE(ABORT, 'guest sales are immutable');
END;

CREATE TRIGGER guest_sales_no_delete BEFORE DELETE ON guest_sales
BEGIN
    SELECT RAISE(ABORT, 'guest sales are immutable');
END;
