"""Airflow plugin: the cloudbackup operations console and finance downloads, in the Airflow UI's navigation."""

from __future__ import annotations

from functools import cache
from typing import Any

from airflow.plugins_manager import AirflowPlugin

PREFIX = "/cloudbackup"     # cloudbackup.console.pages.PREFIX; the pages link to themselves under it


@cache
def _console_apps() -> list[dict[str, Any]]:
    # Imported on first use: only the api-server asks for the app, so task and DAG-parsing processes, which
    # load plugins too, do not pay for FastAPI, the auth manager and pandas.
    from cloudbackup.console.app import create_app
    from cloudbackup.console.pages import PREFIX as APP_PREFIX

    if APP_PREFIX != PREFIX:
        raise RuntimeError(f"console prefix mismatch: plugin {PREFIX!r}, app {APP_PREFIX!r}")
    return [{"app": create_app(), "url_prefix": PREFIX, "name": "cloudbackup console"}]


class CloudbackupConsolePlugin(AirflowPlugin):
    name = "cloudbackup_console"
    external_views = [
        {"name": "Backup fleet", "href": f"{PREFIX}/", "destination": "nav", "category": "Cloud backup",
         "url_route": "cloudbackup-fleet"},
        {"name": "Finance", "href": f"{PREFIX}/finance", "destination": "nav", "category": "Cloud backup",
         "url_route": "cloudbackup-finance"},
        # A tab on each DAG's page: a backup DAG opens its customer's page (Airflow fills in {DAG_ID}). The
        # 3.3 UI ignores a DAG-page view without url_route: the tab lives at /dags/<id>/plugin/cloudbackup.
        {"name": "Cloud backup", "href": f"{PREFIX}/dags/{{DAG_ID}}", "destination": "dag",
         "url_route": "cloudbackup"},
    ]

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Mounted by the api-server; every route checks Airflow's login and permissions (console_app)."""
        return _console_apps()
