-- 0005: indexes for the operations console (issue #6); it only reads, so no tables of its own.
-- Fleet page: each customer's latest run that recorded a stored size (skipped runs record none).
CREATE INDEX console_runs_customer_stored ON backup_runs (customer_id, started_at) WHERE stored_bytes IS NOT NULL;
-- Fleet page: unsent notices per customer (pending, or failed after the last attempt).
CREATE INDEX console_notices_customer_unsent ON notices (customer_id) WHERE sent_at IS NULL;
