-- Undo 0002_document_tags_and_language.

DROP TABLE document_tags;

ALTER TABLE analyses DROP COLUMN requested_by;

ALTER TABLE documents DROP COLUMN language;
