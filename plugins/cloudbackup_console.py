"""Airflow plugin: the cloudbackup operations console and finance downloads, in the Airflow UI's navigation."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cloudbackup.console_app import create_app
from cloudbackup.console_web import PREFIX


class CloudbackupConsolePlugin(AirflowPlugin):
    name = "cloudbackup_console"
    # Mounted by the api-server; every route checks Airflow's login and permissions (see console_web).
    fastapi_apps = [{"app": create_app(), "url_prefix": PREFIX, "name": "cloudbackup console"}]
    external_views = [
        {"name": "Backup fleet", "href": f"{PREFIX}/", "destination": "nav", "category": "Cloud backup",
         "url_route": "cloudbackup-fleet"},
        {"name": "Finance", "href": f"{PREFIX}/finance", "destination": "nav", "category": "Cloud backup",
         "url_route": "cloudbackup-finance"},
    ]
