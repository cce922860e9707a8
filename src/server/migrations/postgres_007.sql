-- A member's versions by member: an erasure rewrites every stored version of the member in the
-- push's transaction, which read the whole table without this index.
CREATE INDEX IF NOT EXISTS member_versions_member ON member_versions (member_id);
