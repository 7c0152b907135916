"""Backup DAGs (Airflow) of registry shard 51 (cloudbackup.fleetdags); its broken files: registry_check_51.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(51))
