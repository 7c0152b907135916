"""Backup DAGs (Airflow) of registry shard 01 (cloudbackup.fleetdags); its broken files: registry_check_01.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(1))
