"""0006: backup_runs.skip_reason becomes a code; the operator's explanation moves to `detail`.

Revision ID: 0006
Revises: 0005

skip_reason is now a backup.outcomes.SkipReason (suspended | maintenance), NULL unless the run was skipped;
the text it held (the maintenance window, the suspension note, a failure message) moves to its own column,
`detail`. A data migration. Converted from sql/migrations/0006_run_detail.sql of the pre-Alembic runner.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE backup_runs ADD COLUMN detail TEXT")
    # op.execute runs the statement as SQLAlchemy text(), which escapes '%' for psycopg itself: a single '%'
    # here is the LIKE wildcard on both databases (the SQL file needed '%%').
    op.execute("""UPDATE backup_runs SET detail = skip_reason,
  skip_reason = CASE WHEN status <> 'skipped' THEN NULL
                     WHEN lower(skip_reason) LIKE '%maintenance%' THEN 'maintenance'
                     ELSE 'suspended' END
  WHERE skip_reason IS NOT NULL""")


def downgrade() -> None:
    # Forward-only: the project's migrations are never undone; a correction is a new revision.
    raise NotImplementedError("the cloudbackup migrations are forward-only")
