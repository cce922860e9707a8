-- The chain report's records and totals are made from the entries and member versions, never
-- the only truth, and `verify` checks them against the entries. Two costs of keeping them
-- like the ledger, each paid for every record a push touched, came to most of a report's
-- time right after a push on a million members with PostgreSQL's default settings:
-- - the log: each record's page written whole into it the first time it changed after a
--   checkpoint (5,000 touched members: about 13,600 page images, 84 MB). Unlogged tables
--   write no log. After a crash PostgreSQL empties every unlogged table, `report_state` with
--   the rest: a state row gone means the records are gone, and the next report (or the
--   keeper) makes them all again. A standby has none of them; it serves no reports.
-- - the foreign keys to `members`: each record written locked its member's row, a logged
--   write to a page of `members` (again a whole page after each checkpoint).
ALTER TABLE report_digests DROP CONSTRAINT IF EXISTS report_digests_member_id_fkey;
ALTER TABLE report_members DROP CONSTRAINT IF EXISTS report_members_member_id_fkey;
ALTER TABLE report_tier_changes DROP CONSTRAINT IF EXISTS report_tier_changes_member_id_fkey;
ALTER TABLE report_digests SET UNLOGGED;
ALTER TABLE report_members SET UNLOGGED;
ALTER TABLE report_tier_changes SET UNLOGGED;
ALTER TABLE report_totals SET UNLOGGED;
ALTER TABLE report_state SET UNLOGGED;
