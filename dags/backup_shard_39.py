"""Backup DAGs (Airflow) of registry shard 39 (cloudbackup.fleetdags); its broken files: registry_check_39.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(39))
