-- How this till trusts its server: the SHA-256 pin of the server's public key from the join
-- code (NULL: the operating system's certificate authorities), and whether plain HTTP to another
-- machine was allowed on purpose.
ALTER TABLE sync_state ADD COLUMN pin TEXT;
ALTER TABLE sync_state ADD COLUMN insecure_http INTEGER NOT NULL DEFAULT 0 CHECK (insecure_http IN (0, 1));
