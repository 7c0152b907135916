-- ('%%' is a literal '%' for psycopg and two wildcards for SQLite: either way it matches.)
-- backup_runs.skip_reason becomes a code (backup.outcomes.SkipReason: suspended | maintenance); the
-- operator's explanation (the window, the failure message) moves to its own column, `detail`.
ALTER TABLE backup_runs ADD COLUMN detail TEXT;
UPDATE backup_runs SET detail = skip_reason,
  skip_reason = CASE WHEN status <> 'skipped' THEN NULL
                     WHEN lower(skip_reason) LIKE '%%maintenance%%' THEN 'maintenance'
                     ELSE 'suspended' END
  WHERE skip_reason IS NOT NULL;
