"""Backup DAGs (Airflow) of registry shard 58 (cloudbackup.fleetdags); its broken files: registry_check_58.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(58))
