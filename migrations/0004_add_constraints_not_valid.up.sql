-- schemagate:lock-timeout=5s

-- Add the constraints without scanning existing rows (NOT VALID): only a
-- short lock is needed, and new/updated rows are checked from now on.
-- Existing rows are checked by 0005_validate_constraints.

ALTER TABLE analyses
    ADD CONSTRAINT analyses_requested_by_fkey
    FOREIGN KEY (requested_by) REFERENCES users (id) ON DELETE SET NULL
    NOT VALID;

ALTER TABLE documents
    ADD CONSTRAINT documents_language_check
    CHECK (language ~ '^[a-z]{2,3}(-[A-Z]{2})?$')
    NOT VALID;
