-- Expand-only change: new nullable columns and a new table.
-- Old application versions keep working because nothing they use changes.

ALTER TABLE documents ADD COLUMN language text;

ALTER TABLE analyses ADD COLUMN requested_by bigint;

CREATE TABLE document_tags (
    document_id bigint      NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    tag         text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT document_tags_pkey PRIMARY KEY (document_id, tag),
    CONSTRAINT document_tags_tag_check CHECK (tag ~ '^[a-z0-9][a-z0-9_-]{0,62}$')
);

CREATE INDEX document_tags_tag_idx ON document_tags (tag);
