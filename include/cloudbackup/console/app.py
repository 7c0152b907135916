"""The console's FastAPI app, mounted by the Airflow plugin: every route needs Airflow's login and permissions."""

from __future__ import annotations

import html
import os
import re
from urllib.parse import quote

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag, requires_authenticated
from airflow.models.connection import Connection
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloudbackup import settings
from cloudbackup.billing.months import BillingMonth
from cloudbackup.clock import utcnow
from cloudbackup.console import queries as console
from cloudbackup.console import reports
from cloudbackup.console.pages import (
    BILLING_DAG_ID,
    CSV_FILES,
    PREFIX,
    REGISTRY,
    Registered,
    fleet_html,
    month_csvs,
    render_customer,
    render_finance,
    render_invoice,
    render_reports,
)
from cloudbackup.edges import db

DB_CONN_ID = os.environ.get("CLOUDBACKUP_DB_CONN_ID", "cloudbackup_db")


def project_engine() -> Engine:
    """The project's DB from the `cloudbackup_db` Airflow connection (env, secrets backend or metadata DB)."""
    c = Connection.get_connection_from_secrets(DB_CONN_ID)
    url = db.url_from_connection(c.conn_type, c.host, c.port, c.login, c.password, c.schema)
    return db.engine_for(url.render_as_string(hide_password=False))


def create_app() -> FastAPI:
    """The FastAPI app the plugin mounts at PREFIX; every route needs a logged-in Airflow user."""
    app = FastAPI(title="cloudbackup console", dependencies=[Depends(requires_authenticated())],
                  docs_url=None, redoc_url=None, openapi_url=None)

    def may_read_customer(request: Request, user: GetUserDep) -> None:
        # A customer's page shows what its backup DAG does: the same read permission applies.
        dag_id = f"backup_{request.path_params['customer_id'].replace('-', '_')}"
        if not get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=user):
            raise HTTPException(403, "Forbidden")

    @app.exception_handler(StarletteHTTPException)
    async def refused(request: Request, exc: StarletteHTTPException) -> Response:
        # A person without a session gets a link to Airflow's sign-in (still a 401); API clients get JSON.
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            login = html.escape(f"/auth/login/?next={quote(str(request.url), safe='')}")
            return HTMLResponse(f'<!doctype html><meta charset="utf-8"><title>Sign in</title><p>Please '
                                f'<a href="{login}">sign in to Airflow</a> to see the cloudbackup console.</p>',
                                status_code=401)
        return await http_exception_handler(request, exc)

    # Finance pages and downloads: whoever may operate the billing DAG (simple auth manager: user, op, admin;
    # not viewer). Other auth managers grant it per DAG (e.g. FAB "can edit on DAG:billing_monthly").
    finance_access = Depends(requires_access_dag("PUT", param_dag_id=BILLING_DAG_ID))

    def audiences(user: GetUserDep) -> set[str]:
        # Ops reports: whoever reads DAGs (the route's dependency); finance reports: the finance pages' right.
        finance = get_auth_manager().is_authorized_dag(method="PUT", details=DagDetails(id=BILLING_DAG_ID),
                                                       user=user)
        return {"ops", "finance"} if finance else {"ops"}

    def state() -> tuple[Registered, Engine]:
        return REGISTRY.get(settings.registry_dir()), project_engine()

    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(requires_access_dag("GET"))])
    def fleet_page(request: Request) -> str:
        return fleet_html(project_engine(), settings.registry_dir(), dict(request.query_params))

    @app.get("/dags/{dag_id}", dependencies=[Depends(requires_access_dag("GET"))])
    def dag_tab(dag_id: str) -> RedirectResponse:
        # The "Cloud backup" tab on a DAG's page: its customer, finance for billing, else the fleet.
        if dag_id == BILLING_DAG_ID:
            return RedirectResponse(f"{PREFIX}/finance", status_code=303)
        reg, _ = state()
        customer = next((c for c in reg.registry.customers if c.dag_id == dag_id), None)
        target = f"{PREFIX}/customers/{customer.id}" if customer else f"{PREFIX}/"
        return RedirectResponse(target, status_code=303)

    @app.get("/customers/{customer_id}", response_class=HTMLResponse, dependencies=[Depends(may_read_customer)])
    def customer_page(customer_id: str) -> str:
        reg, engine = state()
        try:
            customer = reg.registry.get(customer_id)
        except KeyError:
            raise HTTPException(404, f"no customer {customer_id!r} in the registry") from None
        now = utcnow()
        return render_customer(console.customer_detail(engine, customer, reg.catalog, now, reg.windows),
                               customer, now)

    @app.get("/finance", response_class=HTMLResponse, dependencies=[finance_access])
    def finance_page(month: str = "") -> str:
        reg, engine = state()
        months = console.billing_months(engine)
        selected = month or (months[0].billing_month if months else None)
        if selected:
            _month(selected)
        listed = console.month_invoices(engine, selected) if selected else []
        return render_finance(months, selected, listed, {c.id: c.name for c in reg.registry.customers})

    @app.get("/finance/csv/{filename}", dependencies=[finance_access])
    def month_download(filename: str) -> Response:
        match = re.fullmatch(rf"({'|'.join(CSV_FILES)})-(\d{{4}}-\d{{2}})\.csv", filename)
        if not match:
            raise HTTPException(404, f"no month-end file {filename!r}")
        _, engine = state()
        body = month_csvs(engine, _month(match.group(2))).get(filename)
        if body is None:
            raise HTTPException(404, f"no month-end file {filename!r}")
        return Response(body, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @app.get("/finance/invoices/{invoice_number}", response_class=HTMLResponse, dependencies=[finance_access])
    def invoice_page(invoice_number: str) -> str:
        reg, engine = state()
        found = console.invoice_detail(engine, invoice_number)
        if found is None:
            raise HTTPException(404, f"no invoice {invoice_number!r}")
        invoice, lines = found
        names = {c.id: c.name for c in reg.registry.customers}
        return render_invoice(invoice, lines, names.get(invoice.customer_id, ""))

    @app.get("/reports", response_class=HTMLResponse, dependencies=[Depends(requires_access_dag("GET"))])
    def reports_page(user: GetUserDep) -> str:
        return render_reports(reports.describe(), audiences(user))

    @app.get("/reports/{filename}", dependencies=[Depends(requires_access_dag("GET"))])
    def report_download(filename: str, request: Request, user: GetUserDep) -> Response:
        name = filename.removesuffix(".csv")
        try:
            report = reports.find(name)
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from None
        if report.audience not in audiences(user):
            raise HTTPException(403, "Forbidden")
        _, engine = state()
        try:
            columns, rows = reports.run(engine, name, dict(request.query_params))
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return Response(reports.to_csv(columns, rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})

    return app


def _month(text: str) -> BillingMonth:
    try:
        return BillingMonth.parse(text)
    except ValueError as exc:
        raise HTTPException(404, str(exc)) from None
