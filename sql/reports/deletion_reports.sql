-- Ops: customer purges at the end of the service (art. 19(3)): what was deleted, when, by whom, what remains. No params.
SELECT d.customer_id, d.result, d.started_at, d.finished_at, d.operator, d.via, d.bucket, d.objects_deleted,
       d.bytes_deleted, d.markers_deleted, d.objects_remaining, d.bytes_remaining, d.locked_until, d.snapshot_count,
       d.first_snapshot_id, d.last_snapshot_id, d.keys_sha256, d.detail
FROM deletion_reports d
ORDER BY d.finished_at, d.id
