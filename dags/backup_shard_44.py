"""Backup DAGs (Airflow) of registry shard 44 (cloudbackup.fleetdags); its broken files: registry_check_44.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(44))
