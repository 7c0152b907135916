-- Ops: each customer's most recent backup run. No params.
SELECT r.customer_id, r.status, r.started_at, r.finished_at, r.files_collected, r.bytes_collected,
       r.collection_error_count, r.counted_bytes, r.capacity_basis, r.stored_bytes, r.skip_reason, r.detail
FROM backup_runs r
WHERE r.id = (SELECT MAX(r2.id) FROM backup_runs r2 WHERE r2.customer_id = r.customer_id)
ORDER BY r.customer_id
