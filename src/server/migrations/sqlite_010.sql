-- Sales without a member a till undid (typed wrong, or recorded twice), as tills push them: at
-- most one per sale and till, counted only against a sale the same till pushed (a void naming
-- another till's sale holds nothing off). A void and its sale may arrive in either order, so
-- each trigger looks for the other: a sale arriving voided adds nothing to its day, a void
-- arriving after its sale takes the sale off its day.
CREATE TABLE guest_sale_voids (
    sale_id     BLOB    NOT NULL,
    terminal_id TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    PRIMARY KEY (sale_id, terminal_id)
) STRICT;

DROP TRIGGER guest_sales_by_day_add;

CREATE TRIGGER guest_sales_by_day_add AFTER INSERT ON guest_sales
WHEN NOT EXISTS (SELECT 1 FROM guest_sale_voids
                 WHERE sale_id = NEW.id AND terminal_id = NEW.terminal_id)
BEGIN
    INSERT INTO guest_sales_by_day (day, orders, revenue)
    VALUES (NEW.occurred_at - NEW.occurred_at % 86400000, 1, NEW.amount_minor)
    ON CONFLICT (day) DO UPDATE SET orders = orders + 1, revenue = revenue + excluded.revenue;
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
