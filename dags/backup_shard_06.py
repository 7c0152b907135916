"""Backup DAGs (Airflow) of registry shard 06 (cloudbackup.fleetdags); its broken files: registry_check_06.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(6))
