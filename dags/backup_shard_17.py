"""Backup DAGs (Airflow) of registry shard 17 (cloudbackup.fleetdags); its broken files: registry_check_17.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(17))
