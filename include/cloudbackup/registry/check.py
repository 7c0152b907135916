"""The one gate of the registry: every problem that would stop a customer's DAG or run, naming file and field.

`cloudbackup registry check` and the backup DAG files apply the same validation (`check_registry`): a customer
with a problem gets no DAG, the others load. Per file: the fields (types, cron validity with croniter, absolute
non-overlapping paths, well-formed connection id and server name, the contract timeline), the file name as the
id, one file per id and DAG id. Across files: plan codes in `catalog.yaml`, sales agents in `operator.yaml`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cloudbackup.registry.catalog import Catalog, load_catalog
from cloudbackup.registry.customers import Customer, Registry, RegistryError, load_registry
from cloudbackup.registry.operator import OperatorSettings, load_operator


@dataclass(frozen=True)
class FleetCheck:
    """`registry.customers`: the customers fit to run; `registry.errors`: every customer file with a problem (its
    DAG is not built); `settings_problems`: catalog or operator settings that cannot be read (then customers are
    not checked against them, and their DAGs still load: one broken shared file must not hide the fleet)."""

    registry: Registry
    settings_problems: tuple[str, ...]


def customer_problems(customer: Customer, catalog: Catalog | None, operator: OperatorSettings | None) -> list[str]:
    """A valid file's references to the shared files: plan codes (catalog), sales agent (operator settings)."""
    found = []
    if catalog is not None:
        for i, change in enumerate(customer.plans):
            try:
                catalog.plan(change.plan)
            except KeyError as exc:
                found.append(f"field 'plans.{i}.plan': {exc.args[0]}")
    if operator is not None and customer.sales_agent not in operator.sales_agents:
        found.append(f"field 'sales_agent': {customer.sales_agent!r} is not in operator.yaml")
    return found


def check_registry(directory: Path, select: Callable[[str], bool] | None = None) -> FleetCheck:
    """Load and check the customer files under `directory` (only the ids `select` accepts, when given)."""
    registry = load_registry(directory, select)
    settings_problems: list[str] = []
    catalog: Catalog | None = None
    operator: OperatorSettings | None = None
    try:
        catalog = load_catalog(directory / "catalog.yaml")
    except ValueError as exc:
        settings_problems.append(str(exc))
    try:
        operator = load_operator(directory / "operator.yaml")
    except ValueError as exc:
        settings_problems.append(str(exc))
    good: list[Customer] = []
    errors = list(registry.errors)
    files = {c.id: _file_of(directory, c.id) for c in registry.customers}
    for customer in registry.customers:
        found = customer_problems(customer, catalog, operator)
        if found:
            errors.append(RegistryError(files[customer.id], tuple(found)))
        else:
            good.append(customer)
    errors.sort(key=lambda e: str(e.file))
    return FleetCheck(Registry(tuple(good), tuple(errors)), tuple(settings_problems))


def _file_of(directory: Path, customer_id: str) -> Path:
    path = directory / "customers" / f"{customer_id}.yaml"
    return path if path.exists() else path.with_suffix(".yml")


def problems(fleet: FleetCheck) -> list[str]:
    """Every error, one line each, naming the file (relative to the registry) and the field."""
    return [*fleet.settings_problems, *(_relative(e) for e in fleet.registry.errors)]


def _relative(error: RegistryError) -> str:
    return f"customers/{error.file.name}: " + "; ".join(error.problems)


def warnings(registry: Registry) -> list[str]:
    """Corrections the registry applied to customers' timelines (see Customer.timeline_warnings), and SFTP
    connections shared by several customers (one customer's restore target could reach another's server, art. 33)."""
    found = [w for customer in registry.customers for w in customer.timeline_warnings]
    by_connection: dict[str, list[str]] = {}
    for c in registry.customers:
        by_connection.setdefault(c.sftp.connection_id, []).append(c.id)
    found += [f"connection {conn!r} is shared by customers {', '.join(ids)} (art. 33: one connection per customer)"
              for conn, ids in sorted(by_connection.items()) if len(ids) > 1]
    return found


def connections_in_env(registry: Registry, environ: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """The customers' SFTP connection ids found as `AIRFLOW_CONN_<ID>` (Airflow's naming) in `environ`, and those
    not found there (they may still be in Airflow's metadata database or a secrets backend, unseen from here)."""
    ids = sorted({c.sftp.connection_id for c in registry.customers})
    found = [i for i in ids if f"AIRFLOW_CONN_{i.upper()}" in environ]
    return found, [i for i in ids if i not in found]


def pools(registry: Registry) -> dict[str, list[str]]:
    """The Airflow pools the backup DAGs use (customers that name a shared `sftp.server`) and their customers."""
    out: dict[str, list[str]] = {}
    for c in registry.customers:
        if c.sftp.pool:
            out.setdefault(c.sftp.pool, []).append(c.id)
    return dict(sorted(out.items()))
