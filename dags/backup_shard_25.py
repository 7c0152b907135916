"""Backup DAGs (Airflow) of registry shard 25 (cloudbackup.fleetdags); its broken files: registry_check_25.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(25))
