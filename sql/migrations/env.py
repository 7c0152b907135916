"""Alembic environment of the project's own database (sql/migrations is the script directory).

Online mode only, on a connection handed over by cloudbackup.edges.db.migrate in
``config.attributes["connection"]``, already inside the migrating transaction (which holds the migration lock
and has adopted a database left by the pre-Alembic runner). Run the migrations with ``cloudbackup db migrate``,
not with the ``alembic`` command: it has no connection to hand over.
"""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("the cloudbackup migrations run through cloudbackup.edges.db.migrate "
                       "(`cloudbackup db migrate`), which hands over a connection; the alembic command has none")

# Called by Alembic after each revision (or stamp) it applies; migrate() collects the names applied.
context.configure(connection=connection, target_metadata=None,
                  on_version_apply=config.attributes.get("on_version_apply"))
with context.begin_transaction():  # the caller's transaction: a no-op here
    context.run_migrations()
