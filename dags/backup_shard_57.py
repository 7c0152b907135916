"""Backup DAGs (Airflow) of registry shard 57 (cloudbackup.fleetdags); its broken files: registry_check_57.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(57))
