"""Backup DAGs (Airflow) of registry shard 46 (cloudbackup.fleetdags); its broken files: registry_check_46.py."""

from cloudbackup.fleetdags import build_shard

globals().update(build_shard(46))
