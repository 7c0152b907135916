"""Backup DAGs (Airflow) of registry shard 42 (cloudbackup.fleetdags); its broken files: registry_check_42.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(42))
