"""Backup DAGs (Airflow) of registry shard 23 (cloudbackup.fleetdags); its broken files: registry_check_23.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(23))
