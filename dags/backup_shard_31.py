"""Backup DAGs (Airflow) of registry shard 31 (cloudbackup.fleetdags); its broken files: registry_check_31.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(31))
