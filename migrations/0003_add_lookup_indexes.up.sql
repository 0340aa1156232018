-- schemagate:no-transaction

CREATE INDEX CONCURRENTLY IF NOT EXISTS documents_sha256_idx ON documents (sha256);

CREATE INDEX CONCURRENTLY IF NOT EXISTS analyses_requested_by_idx ON analyses (requested_by);
