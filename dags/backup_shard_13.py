"""Backup DAGs (Airflow) of registry shard 13 (cloudbackup.fleetdags); its broken files: registry_check_13.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(13))
