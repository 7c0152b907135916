"""Backup DAGs (Airflow) of registry shard 32 (cloudbackup.fleetdags); its broken files: registry_check_32.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(32))
