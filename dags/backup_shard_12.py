"""Backup DAGs (Airflow) of registry shard 12 (cloudbackup.fleetdags); its broken files: registry_check_12.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(12))
