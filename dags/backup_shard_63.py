"""Backup DAGs (Airflow) of registry shard 63 (cloudbackup.fleetdags); its broken files: registry_check_63.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(63))
