"""Backup DAGs (Airflow) of registry shard 26 (cloudbackup.fleetdags); its broken files: registry_check_26.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(26))
