"""0005: indexes for the operations console (issue #6); it only reads, so no tables of its own.

Revision ID: 0005
Revises: 0004

Converted from sql/migrations/0005_console.sql of the pre-Alembic runner.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Fleet page: each customer's latest run that recorded a stored size (skipped runs record none).
    op.execute("CREATE INDEX console_runs_customer_stored ON backup_runs (customer_id, started_at) "
               "WHERE stored_bytes IS NOT NULL")
    # Fleet page: unsent notices per customer (pending, or failed after the last attempt).
    op.execute("CREATE INDEX console_notices_customer_unsent ON notices (customer_id) WHERE sent_at IS NULL")


def downgrade() -> None:
    # Forward-only: the project's migrations are never undone; a correction is a new revision.
    raise NotImplementedError("the cloudbackup migrations are forward-only")
