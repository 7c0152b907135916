"""Backup DAGs (Airflow) of registry shard 00 (cloudbackup.fleetdags); its broken files: registry_check_00.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(0))
