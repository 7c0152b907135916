"""Backup DAGs (Airflow) of registry shard 38 (cloudbackup.fleetdags); its broken files: registry_check_38.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(38))
