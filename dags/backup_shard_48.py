"""Backup DAGs (Airflow) of registry shard 48 (cloudbackup.fleetdags); its broken files: registry_check_48.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(48))
