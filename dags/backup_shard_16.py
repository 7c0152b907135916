"""Backup DAGs (Airflow) of registry shard 16 (cloudbackup.fleetdags); its broken files: registry_check_16.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(16))
