"""0004: the notice outbox's delivery bookkeeping (art. 28: every notice is a record of what, to whom, when).

Revision ID: 0004
Revises: 0003

A delivery worker claims a notice (claim_token + claimed_until, a lease) before sending it and marks it sent in
its own transaction right after, so a retried task never sends it twice. A notice refused max-attempts times is
flagged stuck (stuck_at) for an operator instead of being retried forever.
Converted from sql/migrations/0004_notices.sql of the pre-Alembic runner.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# An instant (always UTC), per dialect.
_TIMESTAMP = {"sqlite": "TEXT", "postgresql": "TIMESTAMPTZ"}


def upgrade() -> None:
    timestamp = _TIMESTAMP[op.get_bind().dialect.name]

    op.execute("ALTER TABLE notices ADD COLUMN language TEXT NOT NULL DEFAULT 'ja'")
    op.execute("ALTER TABLE notices ADD COLUMN claim_token TEXT")
    op.execute(f"ALTER TABLE notices ADD COLUMN claimed_until {timestamp}")
    op.execute(f"ALTER TABLE notices ADD COLUMN next_attempt_at {timestamp}")
    op.execute(f"ALTER TABLE notices ADD COLUMN last_attempt_at {timestamp}")
    op.execute(f"ALTER TABLE notices ADD COLUMN stuck_at {timestamp}")

    op.execute("CREATE INDEX notices_customer_created ON notices (customer_id, created_at)")
    op.execute("CREATE INDEX notices_stuck ON notices (stuck_at)")


def downgrade() -> None:
    # Forward-only: the project's migrations are never undone; a correction is a new revision.
    raise NotImplementedError("the cloudbackup migrations are forward-only")
