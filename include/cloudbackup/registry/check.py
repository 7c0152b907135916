"""`cloudbackup registry check`: the problems that would stop a customer's DAG or run, naming file and field."""

from __future__ import annotations

from cloudbackup.registry.catalog import Catalog
from cloudbackup.registry.customers import Registry
from cloudbackup.registry.operator import OperatorSettings


def problems(registry: Registry, catalog: Catalog, operator: OperatorSettings | ValueError) -> list[str]:
    """Every broken customer file, unknown plan code and unknown sales agent; `operator` is the loaded
    operator settings, or the error that loading them raised."""
    found = [str(e) for e in registry.errors]
    for customer in registry.customers:
        for change in customer.plans:
            try:
                catalog.plan(change.plan)
            except KeyError as exc:
                found.append(f"customers/{customer.id}.yaml: field 'plans': {exc.args[0]}")
    if isinstance(operator, ValueError):
        return [*found, str(operator)]
    found += [f"customers/{c.id}.yaml: field 'sales_agent': {c.sales_agent!r} is not in operator.yaml"
              for c in registry.customers if c.sales_agent not in operator.sales_agents]
    return found


def warnings(registry: Registry) -> list[str]:
    """Corrections the registry applied to customers' timelines (see Customer.timeline_warnings)."""
    return [w for customer in registry.customers for w in customer.timeline_warnings]
