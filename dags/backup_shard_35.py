"""Backup DAGs (Airflow) of registry shard 35 (cloudbackup.fleetdags); its broken files: registry_check_35.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(35))
