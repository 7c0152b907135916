"""Backup DAGs (Airflow) of registry shard 19 (cloudbackup.fleetdags); its broken files: registry_check_19.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(19))
