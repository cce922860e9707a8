-- Each member's balance was kept in `balances`, upserted for every member a push touched: about
-- 4,000 new row versions for a 5,000-entry push, a third of PostgreSQL's ingest time. Only
-- a live balance and the double-spend check read it, for one member or a push's redeemers, so
-- those now sum the member's entries (`entries_member`) when asked. Never the only truth.
DROP TABLE IF EXISTS balances;
