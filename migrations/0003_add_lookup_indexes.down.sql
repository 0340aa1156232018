-- schemagate:no-transaction

DROP INDEX CONCURRENTLY IF EXISTS analyses_requested_by_idx;

DROP INDEX CONCURRENTLY IF EXISTS documents_sha256_idx;
