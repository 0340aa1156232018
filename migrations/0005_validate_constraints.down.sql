-- Undo 0005_validate_constraints: PostgreSQL cannot mark a constraint as
-- not validated again, so re-create both exactly as 0004 left them.

ALTER TABLE documents DROP CONSTRAINT documents_language_check;

ALTER TABLE documents
    ADD CONSTRAINT documents_language_check
    CHECK (language ~ '^[a-z]{2,3}(-[A-Z]{2})?$')
    NOT VALID;

ALTER TABLE analyses DROP CONSTRAINT analyses_requested_by_fkey;

ALTER TABLE analyses
    ADD CONSTRAINT analyses_requested_by_fkey
    FOREIGN KEY (requested_by) REFERENCES users (id) ON DELETE SET NULL
    NOT VALID;
