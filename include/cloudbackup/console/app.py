"""The console's FastAPI app, mounted by the Airflow plugin: every route needs Airflow's login and permissions."""

from __future__ import annotations

import html
import os
import re
from datetime import date, timedelta
from functools import lru_cache
from typing import Annotated
from urllib.parse import quote

import httpx
import sqlalchemy as sa
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag, requires_authenticated
from airflow.models.connection import Connection
from airflow.models.dag import DagModel
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloudbackup import settings
from cloudbackup.backup import repository
from cloudbackup.billing import archive
from cloudbackup.billing.months import BillingMonth
from cloudbackup.clock import utcnow
from cloudbackup.console import browse, i18n, reports
from cloudbackup.console import queries as console
from cloudbackup.console.pages import (
    BILLING_DAG_ID,
    CSV_FILES,
    PREFIX,
    REGISTRY,
    RESTORE_DAG_ID,
    Registered,
    fleet_html,
    month_csvs,
    render_archive,
    render_browse,
    render_customer,
    render_finance,
    render_invoice,
    render_refused,
    render_reports,
    render_restore_run,
    restore_targets,
)
from cloudbackup.edges import connections, db
from cloudbackup.edges.s3 import ObjectStore, is_missing
from cloudbackup.registry.customers import Customer

DB_CONN_ID = os.environ.get("CLOUDBACKUP_DB_CONN_ID", "cloudbackup_db")


def project_engine() -> Engine:
    """The project's DB from the `cloudbackup_db` Airflow connection (env, secrets backend or metadata DB)."""
    c = Connection.get_connection_from_secrets(DB_CONN_ID)
    url = db.url_from_connection(c.conn_type, c.host, c.port, c.login, c.password, c.schema)
    return db.engine_for(url.render_as_string(hide_password=False))


def request_language(request: Request) -> str:
    """The page's language: ?lang=, the console's toggle, Airflow UI's language (cookie), Accept-Language."""
    return i18n.pick_language(request.query_params.get("lang"), request.cookies,
                              request.headers.get("accept-language"))


LangDep = Annotated[str, Depends(request_language)]


def paused_dag_ids(session: SessionDep) -> frozenset[str]:
    """The DAGs Airflow has paused, read from its metadata DB with the session its own routes use."""
    return frozenset(session.scalars(sa.select(DagModel.dag_id).where(DagModel.is_paused.is_(True))))


PausedDep = Annotated[frozenset[str], Depends(paused_dag_ids)]


def may_restore(user: object) -> bool:
    """Restores are for operators: whoever may edit connections (a restore writes onto a customer's server
    through its connection) and trigger the restore DAG. Simple auth manager: op and admin."""
    manager = get_auth_manager()
    return (manager.is_authorized_connection(method="PUT", user=user)
            and manager.is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN,
                                          details=DagDetails(id=RESTORE_DAG_ID), user=user))


def run_timeout() -> timedelta:
    return timedelta(seconds=settings.run_timeout_seconds())


def _manifest_entries(customer_id: str, snapshot_id: str) -> tuple[browse.Entry, ...] | None:
    """The snapshot's files from its manifest; None when the manifest is gone from S3 (said on the page)."""
    try:
        return _read_manifest(customer_id, snapshot_id)
    except Exception as exc:
        if is_missing(exc):
            return None
        raise


@lru_cache(maxsize=64)
def _read_manifest(customer_id: str, snapshot_id: str) -> tuple[browse.Entry, ...]:
    # Manifests never change once written: each is read from S3 once (by key: no listing).
    manifest = repository.load_manifest(ObjectStore(connections.s3_endpoint()), customer_id, snapshot_id)
    if manifest is None:
        raise ValueError(f"no snapshot id given for {customer_id!r}")
    return tuple(browse.Entry(f.path, f.size, f.mtime, f.kind, f.target) for f in manifest.files)


def _user_token(request: Request) -> str:
    """The user's own Airflow token (session cookie or bearer): Airflow checks the trigger as that user."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:]
    token = request.cookies.get("_token")
    if not token:
        raise HTTPException(401, "Not authenticated")
    return token


def _airflow_api(request: Request) -> httpx.Client:
    # The api-server this app is mounted in: its REST API, called with the user's token.
    return httpx.Client(base_url=str(request.base_url).rstrip("/"), timeout=30,
                        headers={"Authorization": f"Bearer {_user_token(request)}"})


def _query_date(field: str, text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text.strip() else None
    except ValueError:
        raise HTTPException(400, f"{field}: {text!r} is not a date (YYYY-MM-DD)") from None


def _query_yen(field: str, text: str) -> int | None:
    if not text.strip():
        return None
    if not text.strip().isdigit():
        raise HTTPException(400, f"{field}: {text!r} is not a whole number of yen")
    return int(text)


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
        # A person without a session gets a link to Airflow's sign-in (still a 401); one without the role gets
        # a page naming the role it needs (still a 403); API clients get JSON.
        wants_html = "text/html" in request.headers.get("accept", "")
        if exc.status_code == 401 and wants_html:
            login = html.escape(f"/auth/login/?next={quote(str(request.url), safe='')}")
            if request_language(request) == "ja":
                return HTMLResponse(f'<!doctype html><html lang="ja"><meta charset="utf-8"><title>サインイン</title>'
                                    f'<p>cloudbackup コンソールを見るには <a href="{login}">Airflow にサインイン</a>'
                                    'してください。</p>', status_code=401)
            return HTMLResponse(f'<!doctype html><meta charset="utf-8"><title>Sign in</title><p>Please '
                                f'<a href="{login}">sign in to Airflow</a> to see the cloudbackup console.</p>',
                                status_code=401)
        if exc.status_code == 403 and wants_html:
            path = request.url.path.removeprefix(PREFIX)
            what = ("the operator role (Airflow role op or admin)" if path.endswith("/restore")
                    else "the finance role (Airflow role user, op or admin)"
                    if path.startswith(("/finance", "/reports/")) else "read access to this customer's DAG")
            return HTMLResponse(render_refused(what, request_language(request)), status_code=403)
        return await http_exception_handler(request, exc)

    @app.middleware("http")
    async def remember_language(request: Request, call_next):  # noqa: ANN001, ANN202
        # The toggle (?lang=ja|en) is remembered for the console's pages.
        response = await call_next(request)
        chosen = request.query_params.get("lang")
        if chosen in i18n.LANGUAGES:
            response.set_cookie(i18n.TOGGLE_COOKIE, chosen, path=f"{PREFIX}/", samesite="lax",
                                max_age=365 * 86400)
        return response

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
    def fleet_page(request: Request, lang: LangDep, paused: PausedDep) -> str:
        return fleet_html(project_engine(), settings.registry_dir(), dict(request.query_params), paused=paused,
                          run_timeout=run_timeout(), lang=lang)

    @app.get("/dags/{dag_id}", dependencies=[Depends(requires_access_dag("GET"))])
    def dag_tab(dag_id: str) -> RedirectResponse:
        # The "Cloud backup" tab on a DAG's page: its customer, finance for billing, else the fleet.
        if dag_id == BILLING_DAG_ID:
            return RedirectResponse(f"{PREFIX}/finance", status_code=303)
        reg, _ = state()
        customer = next((c for c in reg.registry.customers if c.dag_id == dag_id), None)
        if customer:
            target = f"{PREFIX}/customers/{customer.id}"
        else:   # a broken customer file: the fleet, filtered to it
            broken = next((e.file.stem for e in reg.registry.errors
                           if f"backup_{e.file.stem.replace('-', '_')}" == dag_id), None)
            target = f"{PREFIX}/?q={quote(broken)}" if broken else f"{PREFIX}/"
        return RedirectResponse(target, status_code=303)

    def customer_of(customer_id: str) -> tuple[Registered, Engine, Customer]:
        reg, engine = state()
        try:
            return reg, engine, reg.registry.get(customer_id)
        except KeyError:
            raise HTTPException(404, f"no customer {customer_id!r} in the registry") from None

    @app.get("/customers/{customer_id}", response_class=HTMLResponse, dependencies=[Depends(may_read_customer)])
    def customer_page(customer_id: str, lang: LangDep, paused: PausedDep, user: GetUserDep) -> str:
        reg, engine, customer = customer_of(customer_id)
        now = utcnow()
        detail = console.customer_detail(engine, customer, reg.catalog, now, reg.windows,
                                         paused=customer.dag_id in paused, run_timeout=run_timeout())
        return render_customer(detail, customer, now, lang, may_restore=may_restore(user))

    @app.get("/customers/{customer_id}/snapshots/{snapshot_id}", response_class=HTMLResponse,
             dependencies=[Depends(may_read_customer)])
    def snapshot_page(customer_id: str, snapshot_id: str, lang: LangDep, user: GetUserDep, path: str = "/") -> str:
        _, engine, customer = customer_of(customer_id)
        with engine.connect() as conn:   # only snapshots the project recorded for this customer
            known = conn.execute(sa.text("SELECT forgotten_at FROM snapshots "
                                         "WHERE customer_id = :c AND snapshot_id = :s"),
                                 {"c": customer_id, "s": snapshot_id}).first()
        if known is None:
            raise HTTPException(404, f"no snapshot {snapshot_id!r} for {customer_id!r}")
        if known.forgotten_at is not None:   # forgotten by a prune (retention) or a purge: its manifest is gone
            raise HTTPException(410, f"snapshot {snapshot_id!r} of {customer_id!r} was forgotten by retention or a "
                                     f"purge on {db.from_db_time(known.forgotten_at):%Y-%m-%d %H:%M} UTC")
        try:
            folder = browse.normalise(path)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        entries = _manifest_entries(customer_id, snapshot_id)
        listing = browse.listing(snapshot_id, entries or (), folder)
        return render_browse(customer, listing, restore_targets(customer, snapshot_id, settings.restore_dir()),
                             lang, may_restore=may_restore(user), missing=entries is None)

    @app.post("/customers/{customer_id}/restore", dependencies=[Depends(may_read_customer)])
    def start_restore(customer_id: str, request: Request, user: GetUserDep, snapshot: Annotated[str, Form()],
                      path: Annotated[str, Form()], target: Annotated[str, Form()]) -> RedirectResponse:
        """Trigger the restore DAG through Airflow's REST API, as the user (Airflow checks and records it)."""
        if not may_restore(user):
            raise HTTPException(403, "Forbidden")
        _, _, customer = customer_of(customer_id)
        offered = {value for value, _ in restore_targets(customer, snapshot, settings.restore_dir())}
        if target not in offered:
            raise HTTPException(400, f"target {target!r} is not one the console offers for {customer_id!r}")
        conf = {"customer": customer_id, "snapshot": snapshot, "path": browse.normalise(path), "target": target}
        with _airflow_api(request) as api:
            r = api.post(f"/api/v2/dags/{RESTORE_DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
        if r.status_code >= 400:
            raise HTTPException(r.status_code, f"Airflow refused the restore: {r.text[:500]}")
        return RedirectResponse(f"{PREFIX}/restores/{quote(r.json()['dag_run_id'], safe='')}", status_code=303)

    @app.get("/restores/{run_id}", response_class=HTMLResponse,
             dependencies=[Depends(requires_access_dag("GET", param_dag_id=RESTORE_DAG_ID))])
    def restore_run_page(run_id: str, request: Request, lang: LangDep) -> str:
        with _airflow_api(request) as api:
            r = api.get(f"/api/v2/dags/{RESTORE_DAG_ID}/dagRuns/{quote(run_id, safe='')}")
        if r.status_code >= 400:
            raise HTTPException(r.status_code, f"no restore run {run_id!r}")
        return render_restore_run(r.json(), lang)

    @app.get("/finance", response_class=HTMLResponse, dependencies=[finance_access])
    def finance_page(lang: LangDep, month: str = "") -> str:
        reg, engine = state()
        months = console.billing_months(engine)
        selected = month or (months[0].billing_month if months else None)
        if selected:
            _month(selected)
        listed = console.month_invoices(engine, selected) if selected else []
        return render_finance(months, selected, listed, {c.id: c.name for c in reg.registry.customers}, lang)

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

    @app.get("/finance/archive", response_class=HTMLResponse, dependencies=[finance_access])
    def archive_page(lang: LangDep, date_from: str = "", date_to: str = "", amount_min: str = "",
                     amount_max: str = "", counterparty: str = "") -> str:
        # Strings, not typed params: a browser's form sends empty fields, which mean "any".
        query = {"date_from": _query_date("date_from", date_from), "date_to": _query_date("date_to", date_to),
                 "amount_min": _query_yen("amount_min", amount_min), "amount_max": _query_yen("amount_max", amount_max),
                 "counterparty": counterparty.strip() or None}
        _, engine = state()
        limit = 500
        found = archive.search(engine, limit=limit + 1, **query)
        return render_archive(found[:limit], query, len(found) > limit, lang)

    @app.get("/finance/invoices/{invoice_number}/pdf", dependencies=[finance_access])
    def invoice_pdf(invoice_number: str) -> Response:
        # The qualified invoice as archived (billing/archive.py): the PDF the customer was sent, sha256-checked.
        reg, engine = state()
        try:
            customer_id = archive.data(engine, invoice_number)["recipient"]["customer_id"]
            languages = {c.id: c.language.value for c in reg.registry.customers}
            body = archive.pdf(engine, invoice_number, languages.get(customer_id, "ja"))
        except LookupError:
            raise HTTPException(404, f"no archived invoice {invoice_number!r}") from None
        except archive.TamperedError as exc:
            raise HTTPException(500, str(exc)) from None
        return Response(body, media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="{invoice_number}.pdf"'})

    @app.get("/finance/invoices/{invoice_number}", response_class=HTMLResponse, dependencies=[finance_access])
    def invoice_page(invoice_number: str, lang: LangDep) -> str:
        reg, engine = state()
        found = console.invoice_detail(engine, invoice_number)
        if found is None:
            raise HTTPException(404, f"no invoice {invoice_number!r}")
        invoice, lines = found
        names = {c.id: c.name for c in reg.registry.customers}
        return render_invoice(invoice, lines, names.get(invoice.customer_id, ""), lang)

    @app.get("/reports", response_class=HTMLResponse, dependencies=[Depends(requires_access_dag("GET"))])
    def reports_page(user: GetUserDep, lang: LangDep) -> str:
        return render_reports(reports.describe(), audiences(user), lang)

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
