"""Backup DAGs (Airflow) of registry shard 36 (cloudbackup.fleetdags); its broken files: registry_check_36.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(36))
