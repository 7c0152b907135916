"""Backup DAGs (Airflow) of registry shard 28 (cloudbackup.fleetdags); its broken files: registry_check_28.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(28))
