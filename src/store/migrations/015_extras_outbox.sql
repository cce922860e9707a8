-- How far sales without a member and recommend answers have reached the server (their rowids,
-- in the order they were written).
ALTER TABLE sync_state ADD COLUMN guest_sales_pushed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_state ADD COLUMN answers_pushed INTEGER NOT NULL DEFAULT 0;
