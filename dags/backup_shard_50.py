"""Backup DAGs (Airflow) of registry shard 50 (cloudbackup.fleetdags); its broken files: registry_check_50.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(50))
