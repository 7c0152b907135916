"""Backup DAGs (Airflow) of registry shard 07 (cloudbackup.fleetdags); its broken files: registry_check_07.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(7))
