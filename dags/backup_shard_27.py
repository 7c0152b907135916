"""Backup DAGs (Airflow) of registry shard 27 (cloudbackup.fleetdags); its broken files: registry_check_27.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(27))
