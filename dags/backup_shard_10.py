"""Backup DAGs (Airflow) of registry shard 10 (cloudbackup.fleetdags); its broken files: registry_check_10.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(10))
