"""Backup DAGs (Airflow) of registry shard 52 (cloudbackup.fleetdags); its broken files: registry_check_52.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(52))
