"""Backup DAGs (Airflow) of registry shard 29 (cloudbackup.fleetdags); its broken files: registry_check_29.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(29))
