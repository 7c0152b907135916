"""Backup DAGs (Airflow) of registry shard 47 (cloudbackup.fleetdags); its broken files: registry_check_47.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(47))
