"""0011: the contract figure — what counted against the contract capacity, and on which basis, per run and event.

Revision ID: 0011
Revises: 0010

`backup_runs.counted_bytes` / `capacity_events.counted_bytes`: the figure compared with the contract capacity
(art. 6, 17(3)); `capacity_basis` (`source_bytes` | `stored_bytes`, backup.yaml) says what it measured.
`backup_runs.stored_bytes` stays the operator's own figure (every object under the customer's prefix in S3).

Rows written before this revision compared stored bytes with the capacity, so they are recorded as such:
`counted_bytes` = `stored_bytes`, basis `stored_bytes` (runs that measured nothing keep both NULL).
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("backup_runs", "capacity_events"):
        # Nullable: skipped and failed runs measure nothing (as stored_bytes).
        op.execute(f"ALTER TABLE {table} ADD COLUMN counted_bytes BIGINT")
        op.execute(f"ALTER TABLE {table} ADD COLUMN capacity_basis TEXT")
        op.execute(f"UPDATE {table} SET counted_bytes = stored_bytes, capacity_basis = 'stored_bytes' "
                   "WHERE stored_bytes IS NOT NULL")
    # Fleet page and the next run's crossing check: each customer's latest run that recorded a contract figure.
    op.execute("CREATE INDEX backup_runs_customer_counted ON backup_runs (customer_id, started_at) "
               "WHERE counted_bytes IS NOT NULL")


def downgrade() -> None:
    # Forward-only: the project's migrations are never undone; a correction is a new revision.
    raise NotImplementedError("the cloudbackup migrations are forward-only")
