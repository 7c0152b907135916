"""Backup DAGs (Airflow) of registry shard 05 (cloudbackup.fleetdags); its broken files: registry_check_05.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(5))
