-- schemagate:lock-timeout=5s
-- schemagate:statement-timeout=10m

-- VALIDATE CONSTRAINT scans the table but only takes SHARE UPDATE EXCLUSIVE
-- (plus ROW SHARE on the referenced table), so reads and writes continue.

ALTER TABLE analyses VALIDATE CONSTRAINT analyses_requested_by_fkey;

ALTER TABLE documents VALIDATE CONSTRAINT documents_language_check;
