"""Backup DAGs (Airflow) of registry shard 34 (cloudbackup.fleetdags); its broken files: registry_check_34.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(34))
