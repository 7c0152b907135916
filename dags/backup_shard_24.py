"""Backup DAGs (Airflow) of registry shard 24 (cloudbackup.fleetdags); its broken files: registry_check_24.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(24))
