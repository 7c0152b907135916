"""Backup DAGs (Airflow) of registry shard 37 (cloudbackup.fleetdags); its broken files: registry_check_37.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(37))
