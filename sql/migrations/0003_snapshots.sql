-- 0003: snapshots (issue #3). The manifest in S3 is the authority; this table lists them for the
-- console, restore forms and reports. One row per complete snapshot.
CREATE TABLE snapshots (
    id {id},
    customer_id TEXT NOT NULL,
    backup_run_id BIGINT REFERENCES backup_runs (id),
    snapshot_id TEXT NOT NULL UNIQUE,   -- e.g. 20261125T030726.123456Z-c0124983 (UTC start + random)
    manifest_key TEXT NOT NULL,         -- customers/<id>/snapshots/<snapshot_id>.json.gz
    file_count BIGINT NOT NULL,
    total_bytes BIGINT NOT NULL,        -- sum of the sizes of the files in the snapshot
    files_read BIGINT NOT NULL,         -- files read over SFTP by this run (new or changed)
    bytes_uploaded BIGINT NOT NULL,     -- bytes this run added to S3
    created_at {timestamp} NOT NULL
);
CREATE INDEX snapshots_customer_created ON snapshots (customer_id, created_at);
