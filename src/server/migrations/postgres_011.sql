-- Sales without a member and recommend answers summed by UTC day (the day's midnight in ms),
-- kept by triggers in the pushing transaction: the chain report read every such row the chain
-- ever pushed. Derived, never the only truth: `verify` sums the rows again and compares.
-- (Triggers dropped and made again rather than CREATE OR REPLACE: PostgreSQL 13 has no such
-- form for triggers.)
CREATE TABLE IF NOT EXISTS guest_sales_by_day (
    day     bigint PRIMARY KEY,
    orders  bigint NOT NULL,
    revenue bigint NOT NULL
);

INSERT INTO guest_sales_by_day (day, orders, revenue)
SELECT occurred_at - occurred_at % 86400000, COUNT(*), SUM(amount_minor)
FROM guest_sales GROUP BY 1
ON CONFLICT (day) DO NOTHING;

CREATE OR REPLACE FUNCTION guest_sales_by_day_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO guest_sales_by_day AS d (day, orders, revenue)
    VALUES (NEW.occurred_at - NEW.occurred_at % 86400000, 1, NEW.amount_minor)
    ON CONFLICT (day) DO UPDATE SET orders = d.orders + 1, revenue = d.revenue + EXCLUDED.revenue;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS guest_sales_by_day_add ON guest_sales;
CREATE TRIGGER guest_sales_by_day_add AFTER INSERT ON guest_sales
    FOR EACH ROW EXECUTE FUNCTION guest_sales_by_day_add();

CREATE TABLE IF NOT EXISTS recommend_answers_by_day (
    day     bigint   NOT NULL,
    score   smallint NOT NULL,
    answers bigint   NOT NULL,
    PRIMARY KEY (day, score)
);

INSERT INTO recommend_answers_by_day (day, score, answers)
SELECT occurred_at - occurred_at % 86400000, score, COUNT(*)
FROM recommend_answers GROUP BY 1, 2
ON CONFLICT (day, score) DO NOTHING;

CREATE OR REPLACE FUNCTION recommend_answers_by_day_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO recommend_answers_by_day AS d (day, score, answers)
    VALUES (NEW.occurred_at - NEW.occurred_at % 86400000, NEW.score, 1)
    ON CONFLICT (day, score) DO UPDATE SET answers = d.answers + 1;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS recommend_answers_by_day_add ON recommend_answers;
CREATE TRIGGER recommend_answers_by_day_add AFTER INSERT ON recommend_answers
    FOR EACH ROW EXECUTE FUNCTION recommend_answers_by_day_add();
