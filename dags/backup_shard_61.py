"""Backup DAGs (Airflow) of registry shard 61 (cloudbackup.fleetdags); its broken files: registry_check_61.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(61))
