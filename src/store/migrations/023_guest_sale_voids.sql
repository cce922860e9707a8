-- A sale without a member undone (the amount typed wrong, or F7 pressed twice): a row of its
-- own naming the sale, never a change to the sale. At most one per sale, made only by the till
-- that recorded the sale. The sums by day leave voided sales out, as `verify` does.
CREATE TABLE guest_sale_voids (
    sale_id     BLOB    PRIMARY KEY REFERENCES guest_sales (id),
    occurred_at INTEGER NOT NULL,
    terminal_id TEXT    NOT NULL,
    actor       TEXT    NOT NULL
) STRICT;

CREATE TRIGGER guest_sale_voids_no_update BEFORE UPDATE ON guest_sale_voids
BEGIN
    SELECT RAISE(ABORT, 'voids of sales without a member are immutable');
END;

CREATE TRIGGER guest_sale_voids_no_delete BEFORE DELETE ON guest_sale_voids
BEGIN
    SELECT RAISE(ABORT, 'voids of sales without a member are immutable');
END;

CREATE TRIGGER guest_sale_voids_by_day AFTER INSERT ON guest_sale_voids
BEGIN
    UPDATE guest_sales_by_day
    SET orders = orders - 1,
        revenue = revenue - (SELECT amount_minor FROM guest_sales WHERE id = NEW.sale_id)
    WHERE day = (SELECT occurred_at - occurred_at % 86400000 FROM guest_sales
                 WHERE id = NEW.sale_id AND terminal_id = NEW.terminal_id);
    DELETE FROM guest_sales_by_day
    WHERE orders = 0
      AND day = (SELECT occurred_at - occurred_at % 86400000 FROM guest_sales
                 WHERE id = NEW.sale_id);
END;

-- The outbox reads this till's own sales and answers after its cursors: by till, so that a
-- demo store's millions of made-up tills' rows are not read again at every sync round.
CREATE INDEX guest_sales_terminal ON guest_sales (terminal_id);
CREATE INDEX nps_answers_terminal ON nps_answers (terminal_id);

-- How far voids have reached the server (their rowids, in the order they were written).
ALTER TABLE sync_state ADD COLUMN voids_pushed INTEGER NOT NULL DEFAULT 0;
