"""Backup DAGs (Airflow) of registry shard 22 (cloudbackup.fleetdags); its broken files: registry_check_22.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(22))
