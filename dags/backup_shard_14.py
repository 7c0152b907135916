"""Backup DAGs (Airflow) of registry shard 14 (cloudbackup.fleetdags); its broken files: registry_check_14.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(14))
