"""Backup DAGs (Airflow) of registry shard 41 (cloudbackup.fleetdags); its broken files: registry_check_41.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(41))
