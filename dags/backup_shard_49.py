"""Backup DAGs (Airflow) of registry shard 49 (cloudbackup.fleetdags); its broken files: registry_check_49.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(49))
