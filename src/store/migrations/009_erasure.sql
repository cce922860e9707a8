-- Members whose personal data was erased at their request (their record keeps the id, card and
-- points; name, phone, email and birthday are gone everywhere).
ALTER TABLE members ADD COLUMN erased_at INTEGER;
