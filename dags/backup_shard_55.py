"""Backup DAGs (Airflow) of registry shard 55 (cloudbackup.fleetdags); its broken files: registry_check_55.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(55))
