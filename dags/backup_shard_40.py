"""Backup DAGs (Airflow) of registry shard 40 (cloudbackup.fleetdags); its broken files: registry_check_40.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(40))
