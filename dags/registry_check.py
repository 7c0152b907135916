"""Shows each broken customer file as this file's import error; the other customers' DAGs still load."""

from __future__ import annotations

from cloudbackup import settings
from cloudbackup.registry.customers import load_registry

# The word DAG must appear for Airflow's safe-mode parser to read this file at all.
_errors = load_registry(settings.registry_dir()).errors
if _errors:
    raise ValueError("customer registry has broken files (their DAGs are not loaded):\n"
                     + "\n".join(f"  {e}" for e in _errors))
