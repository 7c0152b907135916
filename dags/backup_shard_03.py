"""Backup DAGs (Airflow) of registry shard 03 (cloudbackup.fleetdags); its broken files: registry_check_03.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(3))
