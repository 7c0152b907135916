"""0007: one backup run per customer at a time (art. 18): a lease row per customer, and how long a run may live.

Revision ID: 0007
Revises: 0006

`run_leases` holds at most one row per customer: the run that may collect it now (`run_key`, the same key as
its backup_runs row), who holds it (`holder`: host and process, for the operator), and until when
(`expires_at`, UTC). The holder renews `expires_at` while it works (a heartbeat); a worker that dies stops
renewing, so its lease lapses and the next run may take it over (a dead worker never blocks forever). A run
takes the lease by inserting the row, or by updating a row whose lease has lapsed; the primary key makes two
simultaneous takers collide, so exactly one wins on SQLite and PostgreSQL alike. The row is deleted when the
run ends.

`backup_runs.heartbeat_at` (UTC) is the last time the run's worker said it was alive; the sweeper marks
`running` runs whose heartbeat (or start) is older than the lease's lifetime as `failed`.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TIMESTAMP = {"sqlite": "TEXT", "postgresql": "TIMESTAMPTZ"}


def upgrade() -> None:
    timestamp = _TIMESTAMP[op.get_bind().dialect.name]
    op.execute(f"""CREATE TABLE run_leases (
    customer_id TEXT NOT NULL PRIMARY KEY,
    run_key TEXT NOT NULL,
    holder TEXT NOT NULL,
    acquired_at {timestamp} NOT NULL,
    expires_at {timestamp} NOT NULL
)""")
    op.execute(f"ALTER TABLE backup_runs ADD COLUMN heartbeat_at {timestamp}")
    op.execute("CREATE INDEX backup_runs_status ON backup_runs (status)")


def downgrade() -> None:
    # Forward-only: the project's migrations are never undone; a correction is a new revision.
    raise NotImplementedError("the cloudbackup migrations are forward-only")
