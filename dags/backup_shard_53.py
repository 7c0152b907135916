"""Backup DAGs (Airflow) of registry shard 53 (cloudbackup.fleetdags); its broken files: registry_check_53.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(53))
