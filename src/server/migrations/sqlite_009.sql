-- Sales without a member and recommend answers summed by UTC day (the day's midnight in ms),
-- kept by triggers in the pushing transaction: the chain report read every such row the chain
-- ever pushed. Derived, never the only truth: `verify` sums the rows again and compares.
CREATE TABLE guest_sales_by_day (
    day     INTEGER PRIMARY KEY,
    orders  INTEGER NOT NULL,
    revenue INTEGER NOT NULL
) STRICT;

INSERT INTO guest_sales_by_day (day, orders, revenue)
SELECT occurred_at - occurred_at % 86400000, COUNT(*), SUM(amount_minor)
FROM guest_sales GROUP BY 1;

CREATE TRIGGER guest_sales_by_day_add AFTER INSERT ON guest_sales
BEGIN
    INSERT INTO guest_sales_by_day (day, orders, revenue)
    VALUES (NEW.occurred_at - NEW.occurred_at % 86400000, 1, NEW.amount_minor)
    ON CONFLICT (day) DO UPDATE SET orders = orders + 1, revenue = revenue + excluded.revenue;
END;

CREATE TABLE recommend_answers_by_day (
    day     INTEGER NOT NULL,
    score   INTEGER NOT NULL,
    answers INTEGER NOT NULL,
    PRIMARY KEY (day, score)
) STRICT, WITHOUT ROWID;

INSERT INTO recommend_answers_by_day (day, score, answers)
SELECT occurred_at - occurred_at % 86400000, score, COUNT(*)
FROM recommend_answers GROUP BY 1, 2;

CREATE TRIGGER recommend_answers_by_day_add AFTER INSERT ON recommend_answers
BEGIN
    INSERT INTO recommend_answers_by_day (day, score, answers)
    VALUES (NEW.occurred_at - NEW.occurred_at % 86400000, NEW.score, 1)
    ON CONFLICT (day, score) DO UPDATE SET answers = answers + 1;
END;
