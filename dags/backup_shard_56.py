"""Backup DAGs (Airflow) of registry shard 56 (cloudbackup.fleetdags); its broken files: registry_check_56.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(56))
