-- Sales without a member a till undid (typed wrong, or recorded twice), as tills push them: at
-- most one per sale and till, counted only against a sale the same till pushed (a void naming
-- another till's sale holds nothing off). A void and its sale may arrive in either order, so
-- each trigger looks for the other: a sale arriving voided adds nothing to its day, a void
-- arriving after its sale takes the sale off its day.
CREATE TABLE IF NOT EXISTS guest_sale_voids (
    sale_id     uuid   NOT NULL,
    terminal_id text   NOT NULL,
    occurred_at bigint NOT NULL,
    PRIMARY KEY (sale_id, terminal_id)
);

CREATE OR REPLACE FUNCTION guest_sales_by_day_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM guest_sale_voids
                   WHERE sale_id = NEW.id AND terminal_id = NEW.terminal_id) THEN
        INSERT INTO guest_sales_by_day AS d (day, orders, revenue)
        VALUES (NEW.occurred_at - NEW.occurred_at % 86400000, 1, NEW.amount_minor)
        ON CONFLICT (day) DO UPDATE
            SET orders = d.orders + 1, revenue = d.revenue + EXCLUDED.revenue;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION guest_sale_voids_by_day() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sale_day bigint;
    amount   bigint;
BEGIN
    SELECT occurred_at - occurred_at % 86400000, amount_minor INTO sale_day, amount
    FROM guest_sales WHERE id = NEW.sale_id AND terminal_id = NEW.terminal_id;
    IF FOUND THEN
        UPDATE guest_sales_by_day SET orders = orders - 1, revenue = revenue - amount
        WHERE day = sale_day;
        DELETE FROM guest_sales_by_day WHERE day = sale_day AND orders = 0;
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS guest_sale_voids_by_day ON guest_sale_voids;
CREATE TRIGGER guest_sale_voids_by_day AFTER INSERT ON guest_sale_voids
    FOR EACH ROW EXECUTE FUNCTION guest_sale_voids_by_day();
