"""Backup DAGs (Airflow) of registry shard 21 (cloudbackup.fleetdags); its broken files: registry_check_21.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(21))
