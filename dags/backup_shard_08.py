"""Backup DAGs (Airflow) of registry shard 08 (cloudbackup.fleetdags); its broken files: registry_check_08.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(8))
