"""Backup DAGs (Airflow) of registry shard 02 (cloudbackup.fleetdags); its broken files: registry_check_02.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(2))
