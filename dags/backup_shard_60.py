"""Backup DAGs (Airflow) of registry shard 60 (cloudbackup.fleetdags); its broken files: registry_check_60.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(60))
