"""Backup DAGs (Airflow) of registry shard 33 (cloudbackup.fleetdags); its broken files: registry_check_33.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(33))
