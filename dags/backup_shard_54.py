"""Backup DAGs (Airflow) of registry shard 54 (cloudbackup.fleetdags); its broken files: registry_check_54.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(54))
