"""Backup DAGs (Airflow) of registry shard 18 (cloudbackup.fleetdags); its broken files: registry_check_18.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(18))
