"""Backup DAGs (Airflow) of registry shard 43 (cloudbackup.fleetdags); its broken files: registry_check_43.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(43))
