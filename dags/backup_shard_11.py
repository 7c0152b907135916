"""Backup DAGs (Airflow) of registry shard 11 (cloudbackup.fleetdags); its broken files: registry_check_11.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(11))
