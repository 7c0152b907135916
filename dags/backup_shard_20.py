"""Backup DAGs (Airflow) of registry shard 20 (cloudbackup.fleetdags); its broken files: registry_check_20.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(20))
