"""Backup DAGs (Airflow) of registry shard 09 (cloudbackup.fleetdags); its broken files: registry_check_09.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(9))
