"""Backup DAGs (Airflow) of registry shard 04 (cloudbackup.fleetdags); its broken files: registry_check_04.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(4))
