"""cloudbackup: per-customer SFTP→S3 backups, capacity and collection-error notices, monthly billing."""
