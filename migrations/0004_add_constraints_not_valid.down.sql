-- Undo 0004_add_constraints_not_valid.

ALTER TABLE documents DROP CONSTRAINT documents_language_check;

ALTER TABLE analyses DROP CONSTRAINT analyses_requested_by_fkey;
