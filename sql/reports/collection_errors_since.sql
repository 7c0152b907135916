-- Ops: collection errors recorded since a moment. Params: since (ISO 8601 instant, e.g. 2026-11-01T00:00:00+00:00).
SELECT e.customer_id, r.run_key, e.path, e.reason, e.detail, e.recorded_at
FROM collection_errors e JOIN backup_runs r ON r.id = e.backup_run_id
WHERE e.recorded_at >= :since
ORDER BY e.customer_id, e.recorded_at, e.path
