"""Backup DAGs (Airflow) of registry shard 45 (cloudbackup.fleetdags); its broken files: registry_check_45.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(45))
