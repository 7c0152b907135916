"""Backup DAGs (Airflow) of registry shard 30 (cloudbackup.fleetdags); its broken files: registry_check_30.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(30))
