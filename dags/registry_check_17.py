"""No DAG here: the import error of this file (in Airflow's UI) lists the broken customer files of shard 17."""

from cloudbackup.fleetdags import raise_shard_errors

raise_shard_errors(17)
