-- Sales without a member and recommend answers, summed by UTC day (the day's midnight in ms),
-- kept by triggers in the inserting transaction. A report read every such row in its period:
-- a 1,000,000-member demo store holds 2.5 million sales without a member, and its 30-day report
-- read 200,000 of them. Derived, never the only truth: `verify` sums the rows again and
-- compares (and `--repair` makes these again).
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

CREATE TABLE nps_answers_by_day (
    day     INTEGER NOT NULL,
    score   INTEGER NOT NULL,
    answers INTEGER NOT NULL,
    PRIMARY KEY (day, score)
) STRICT, WITHOUT ROWID;

INSERT INTO nps_answers_by_day (day, score, answers)
SELECT occurred_at - occurred_at % 86400000, score, COUNT(*)
FROM nps_answers GROUP BY 1, 2;

CREATE TRIGGER nps_answers_by_day_add AFTER INSERT ON nps_answers
BEGIN
    INSERT INTO nps_answers_by_day (day, score, answers)
    VALUES (NEW.occurred_at - NEW.occurred_at % 86400000, NEW.score, 1)
    ON CONFLICT (day, score) DO UPDATE SET answers = answers + 1;
END;
