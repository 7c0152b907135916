"""Backup DAGs (Airflow) of registry shard 59 (cloudbackup.fleetdags); its broken files: registry_check_59.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(59))
