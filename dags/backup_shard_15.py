"""Backup DAGs (Airflow) of registry shard 15 (cloudbackup.fleetdags); its broken files: registry_check_15.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(15))
