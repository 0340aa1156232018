-- Undo 0001_baseline: drop the whole baseline schema (children first).

DROP TABLE analysis_findings;
DROP TABLE analyses;
DROP TABLE documents;
DROP TABLE users;
DROP FUNCTION set_updated_at();
