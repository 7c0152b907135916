"""Backup DAGs (Airflow) of registry shard 62 (cloudbackup.fleetdags); its broken files: registry_check_62.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(62))
