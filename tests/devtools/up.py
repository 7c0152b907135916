"""`make up` / `make down`: the production-shaped stack on this machine, without Docker.

Airflow 3.3 on the CeleryExecutor (metadata DB on PostgreSQL, broker Redis, both on loopback), its
api-server, scheduler, dag-processor, triggerer and one Celery worker, plus the demo customers' real
OpenSSH sshd, SeaweedFS S3 and a capturing SMTP server (devstack). Every process is started in its own
session and its PID written to `<dir>/pids.json`; `down` stops exactly those (and their children) and
nothing else. `up` while a stack of that folder runs prints its access details and starts nothing.
The end-to-end test (tests/test_stack.py) runs the same `start`/`stop` on a folder and ports of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devtools import devstack

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / "var" / "up"
BIN = Path(sys.executable).parent
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
# The Airflow processes, in start order; each is `airflow <args>`.
COMPONENTS: dict[str, list[str]] = {
    "api-server": ["api-server"],    # port appended at start
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
    "celery-worker": ["celery", "worker"],
}
# Logins of the simple auth manager, with their role: viewer < user < op < admin. The finance pages need
# edit access to billing_monthly (user and up); the simple auth manager cannot grant it per DAG.
LOGINS = {"admin": "admin", "operator": "op", "finance": "user"}


@dataclass
class Access:
    """What `up` prints and writes to access.env: where everything is and how to log in."""

    directory: str
    airflow_url: str
    passwords: dict[str, str]
    airflow_db: str
    project_db: str
    redis_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_bucket: str
    smtp_port: int
    maildir: str
    export_dir: str
    restore_dir: str
    logs: str
    sftp_root: str
    pids: dict[str, int] = field(default_factory=dict)
    sshd_config: str = ""
    queue: str = "default"

    def env_lines(self) -> list[str]:
        pairs = {"AIRFLOW_URL": self.airflow_url,
                 "ADMIN_USER": "admin", "ADMIN_PASSWORD": self.passwords["admin"],
                 "OPERATOR_USER": "operator", "OPERATOR_PASSWORD": self.passwords["operator"],
                 "FINANCE_USER": "finance", "FINANCE_PASSWORD": self.passwords["finance"],
                 "AIRFLOW_DB": self.airflow_db, "CLOUDBACKUP_DB": self.project_db,
                 "S3_ENDPOINT": self.s3_endpoint, "S3_ACCESS_KEY": self.s3_access_key,
                 "S3_SECRET_KEY": self.s3_secret_key, "S3_BUCKET": self.s3_bucket,
                 "SMTP_PORT": str(self.smtp_port), "MAIL_DIR": self.maildir,
                 "EXPORT_DIR": self.export_dir, "RESTORE_DIR": self.restore_dir, "LOG_DIR": self.logs,
                 "SFTP_ROOT": self.sftp_root}
        return [f"{k}={shlex.quote(v)}" for k, v in pairs.items()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_access(directory: Path) -> Access | None:
    state = directory / "state.json"
    return Access(**json.loads(state.read_text())) if state.exists() else None


def running(directory: Path) -> Access | None:
    """The stack of this folder if any of its processes still runs."""
    access = load_access(directory)
    if access and any(_alive(pid) for pid in access.pids.values()):
        return access
    return None


# --- PostgreSQL databases of the stack -------------------------------------------------------------------

def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
        conn.execute(sql)


def recreate_database(name: str) -> None:
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _pg_admin(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- start ------------------------------------------------------------------------------------------

def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:            # refused, reset, or an HTTPError (a subclass): not up yet
        return False


def _wait_for(check, what: str, timeout: float, logs: Path, pids: dict[str, int]) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [name for name, pid in pids.items() if not _alive(pid)]
        if dead:
            tails = "\n".join(f"--- {name}.log\n" + _tail(logs / f"{name}.log") for name in dead)
            raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}:\n{tails}")
        if check():
            return
        time.sleep(1)
    raise RuntimeError(f"{what} not ready within {timeout:.0f} s; logs in {logs}")


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def airflow_env(access: Access, stack: devstack.Stack, names: dict[str, str], secrets_: dict[str, str],
                api_port: int, redis_db: int, sftp_conn_ids: list[str]) -> dict[str, str]:
    """The environment every Airflow process of the stack shares (one jwt secret and fernet key for all)."""
    directory = Path(access.directory)
    pg = f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}"
    # The master key comes from the stack's connection below, never from the caller's environment (which wins).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "CLOUDBACKUP_MASTER_KEY"))}
    env.update({
        "AIRFLOW_HOME": str(directory / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__FERNET_KEY": secrets_["fernet_key"],
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in LOGINS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(directory / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets_["jwt_secret"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{pg}/{names['airflow_db']}",
        # psycopg 3 is async too (Airflow would otherwise derive an asyncpg URL, a driver we do not install).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"{pg}/{names['airflow_db']}",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{pg}/{names['airflow_db']}",
        # Two cores: four task slots; our own queue, so two stacks on one Redis never take each other's work.
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": names["queue"],
        # New customer files show up within half a minute; each of the ~130 DAG files is re-parsed at most
        # every two minutes (a full pass costs ~20 s of CPU on two cores).
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "20",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": access.logs,
        # Each backup DAG's deadline alert (its window): on wherever the real scheduler runs; dag.test() in
        # Airflow 3.3.2 cannot end a run that has one (see cloudbackup.fleetdags).
        "CLOUDBACKUP_DEADLINE_ALERTS": "1",
        "CLOUDBACKUP_EXPORT_DIR": access.export_dir,
        "CLOUDBACKUP_RESTORE_DIR": access.restore_dir,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **devstack.connection_env(stack, {"conn_type": "postgres", "host": PG["host"], "port": PG["port"],
                                          "login": PG["user"], "schema": names["project_db"]}, sftp_conn_ids),
    })
    return env


def _spawn(args: list[str], env: dict[str, str], log: Path) -> int:
    proc = subprocess.Popen(args, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    return proc.pid


def _run(args: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        result = subprocess.run(args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=ROOT)
    if result.returncode:
        raise RuntimeError(f"{' '.join(args[:3])} failed (exit {result.returncode}):\n{_tail(log)}")


def seed_demo_files(sftp_root: Path) -> None:
    """The demo customers' designated areas, as `make demo` fills them."""
    from devtools.demo import DEMO_FILES

    for remote, data in DEMO_FILES.items():
        target = sftp_root / remote.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def start(directory: Path = DEFAULT_DIR, api_port: int | None = None, redis_db: int = 1,
          db_prefix: str = "cloudbackup_up") -> Access:
    """Bring the stack up in `directory`, or return the one already running there."""
    from cloudbackup.registry.customers import load_registry

    already = running(directory)
    if already:
        return already
    if directory.exists():
        stop(directory)                      # leftovers of a stack that died: stop what may remain, start clean
        shutil.rmtree(directory)
    logs = directory / "logs"
    logs.mkdir(parents=True)
    registry = load_registry(ROOT / "dags" / "registry")
    stack = devstack.start_stack(directory / "servers")
    api_port = api_port or (8080 if not devstack._port_open(8080) else devstack.free_port())
    names = {"airflow_db": f"{db_prefix}_airflow", "project_db": db_prefix, "queue": f"{db_prefix}_queue"}
    passwords = {user: secrets.token_urlsafe(12) for user in LOGINS}
    (directory / "passwords.json").write_text(json.dumps(passwords))
    os.chmod(directory / "passwords.json", 0o600)
    s3 = stack.s3.connection()
    access = Access(
        directory=str(directory), airflow_url=f"http://127.0.0.1:{api_port}", passwords=passwords,
        airflow_db=names["airflow_db"], project_db=names["project_db"], redis_url=f"redis://127.0.0.1:6379/{redis_db}",
        s3_endpoint=s3["extra"]["endpoint_url"], s3_access_key=s3["login"], s3_secret_key=s3["password"],
        s3_bucket=s3["extra"]["bucket"], smtp_port=stack.smtp.port, maildir=str(stack.smtp.maildir),
        export_dir=str(directory / "exports"), restore_dir=str(directory / "restores"),
        logs=str(directory / "airflow" / "logs"), sftp_root=str(stack.sshd.root),
        sshd_config=str(stack.sshd.directory / "sshd_config"), queue=names["queue"],
        pids={"sshd": stack.sshd.proc.pid, "s3": stack.s3.proc.pid, "smtp": stack.smtp.proc.pid})  # type: ignore[union-attr]
    _save(access)
    try:
        seed_demo_files(stack.sshd.root)
        env = airflow_env(access, stack, names, {"fernet_key": fernet_key(),
                                                 "jwt_secret": secrets.token_urlsafe(32)},
                          api_port, redis_db, sorted({c.sftp.connection_id for c in registry.customers}))
        (directory / "stack.env").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()
                                                     if k.startswith(("AIRFLOW", "CLOUDBACKUP_"))))
        os.chmod(directory / "stack.env", 0o600)
        for name in (names["airflow_db"], names["project_db"]):
            recreate_database(name)
        _run([str(BIN / "airflow"), "db", "migrate"], env, logs / "airflow-db-migrate.log")
        _run([str(BIN / "cloudbackup"), "db", "migrate"], env, logs / "cloudbackup-db-migrate.log")
        # The registry gate before any DAG is parsed, then the per-server SFTP pools the DAGs name.
        _run([str(BIN / "cloudbackup"), "registry", "check"], env, logs / "registry-check.log")
        _run([str(BIN / "cloudbackup"), "registry", "sync-pools"], env, logs / "registry-sync-pools.log")
        for name, args in COMPONENTS.items():
            extra = ["--port", str(api_port), "--host", "127.0.0.1"] if name == "api-server" else []
            extra += ["--queues", names["queue"], "--concurrency", "4"] if name == "celery-worker" else []
            access.pids[name] = _spawn([str(BIN / "airflow"), *args, *extra], env, logs / f"{name}.log")
            _save(access)
        _wait_for(lambda: _http_ok(f"{access.airflow_url}/api/v2/version"), "the api-server", 180, logs, access.pids)
        client = RestClient(access.airflow_url, "admin", passwords["admin"])
        wanted = {c.dag_id for c in registry.customers} | {"billing_monthly", "deliver_notices", "restore"}
        _wait_for(lambda: wanted <= client.dag_ids(), "the DAGs to be parsed", 240, logs, access.pids)
        _wait_for(lambda: client.worker_ready(logs / "celery-worker.log"), "the Celery worker", 120, logs, access.pids)
    except BaseException:
        stop(directory)
        raise
    (directory / "access.env").write_text("\n".join(access.env_lines()) + "\n")
    os.chmod(directory / "access.env", 0o600)
    return access


def fernet_key() -> str:
    """A Fernet key: 32 random bytes, URL-safe base64 (what cryptography's Fernet.generate_key() returns)."""
    import base64

    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _save(access: Access) -> None:
    path = Path(access.directory) / "state.json"
    path.write_text(json.dumps(asdict(access), indent=2))
    os.chmod(path, 0o600)


class RestClient:
    """Airflow's public REST API with a bearer token of the simple auth manager."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url
        body = json.dumps({"username": user, "password": password}).encode()
        request = urllib.request.Request(f"{url}/auth/token", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            self.token = json.loads(response.read())["access_token"]

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data, method=method,
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: HTTP {exc.code} {exc.read()[:500]!r}") from exc

    def get_bytes(self, path: str) -> tuple[int, bytes]:
        request = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def dag_ids(self) -> set[str]:
        return {d["dag_id"] for d in self.request("GET", "/api/v2/dags?limit=1000")["dags"]}

    @staticmethod
    def worker_ready(log: Path) -> bool:
        return log.exists() and " ready." in log.read_text(errors="replace")

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def wait(self, dag_id: str, run_id: str, timeout: float = 300) -> dict:
        """Poll a run to its end state."""
        from urllib.parse import quote

        deadline = time.monotonic() + timeout
        while True:
            run = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} {run_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(2)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        from urllib.parse import quote

        tis = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")
        return {t["task_id"]: t["state"] for t in tis["task_instances"]}


# --- stop -------------------------------------------------------------------------------------------

def _kill_tree(pids: list[int], sig: int) -> None:
    for pid in pids:
        # Started with start_new_session: its group is its pid and holds its workers. Only a group whose
        # leader is ours is signalled.
        for kill in (os.kill, os.killpg):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, sig)


def _descendants(pids: list[int]) -> list[int]:
    import psutil

    found: list[int] = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            found += [c.pid for c in psutil.Process(pid).children(recursive=True)]
    return found


def stop(directory: Path = DEFAULT_DIR) -> list[str]:
    """Stop every process this folder's stack started (by PID, their children too); returns their names."""
    import psutil

    access = load_access(directory)
    if access is None:
        return []
    pids = {name: pid for name, pid in access.pids.items() if _alive(pid)}
    children = _descendants(list(pids.values()))
    _kill_tree(list(pids.values()), signal.SIGTERM)
    procs = []
    for pid in [*pids.values(), *children]:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    _gone, alive = psutil.wait_procs(procs, timeout=20)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    _kill_tree(list(pids.values()), signal.SIGKILL)
    psutil.wait_procs(alive, timeout=5)
    if access.sshd_config:
        # sshd's session processes call setsid(): find them by their config, as devstack does.
        for proc in psutil.process_iter(["cmdline"]):
            if access.sshd_config in " ".join(proc.info["cmdline"] or ()):
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
        shutil.rmtree(access.sftp_root, ignore_errors=True)
    access.pids = {}
    _save(access)
    return sorted(pids)


# --- the command line --------------------------------------------------------------------------------

def describe(access: Access) -> str:
    directory = Path(access.directory)
    rel = (lambda p: os.path.relpath(p, ROOT) if str(p).startswith(str(ROOT)) else str(p))  # noqa: E731
    return f"""
The cloudbackup stack is up (Airflow 3.3, CeleryExecutor, PostgreSQL, Redis; demo sshd, S3, SMTP).

  Airflow UI   {access.airflow_url}
  Logins       admin    / {access.passwords['admin']}   (admin)
               operator / {access.passwords['operator']}   (op: DAGs, runs, the console)
               finance  / {access.passwords['finance']}   (user: also the Finance pages)
  Console      {access.airflow_url}/cloudbackup/  (and Plugins → Cloud backup in the UI)
  Mail         {rel(access.maildir)}/*.eml  (every message the SMTP server on port {access.smtp_port} received)
  S3           {access.s3_endpoint}  bucket {access.s3_bucket}  (keys in {rel(directory / 'access.env')})
  CSV exports  {rel(access.export_dir)}/
  Restores     {rel(access.restore_dir)}/
  Demo server  {access.sftp_root}  (what the demo customers' SFTP server holds)
  Logs         {rel(directory / 'logs')}/ (components), {rel(access.logs)}/ (tasks)
  Databases    PostgreSQL 127.0.0.1:5432: {access.airflow_db} (Airflow), {access.project_db} (cloudbackup)

For scripts: {rel(directory / 'access.env')} (AIRFLOW_URL=, ADMIN_USER=, ADMIN_PASSWORD=, …; shell syntax).
`cloudbackup` on this stack: source {rel(directory / 'stack.env')} first. `make down` stops it.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.up")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    if args.command == "start":
        already = running(args.dir)
        if already:
            print("already running; nothing started.")
            print(describe(already))
            return 0
        print("starting the stack (sshd, S3, SMTP, airflow db migrate on PostgreSQL, api-server, scheduler, "
              "dag-processor, triggerer, Celery worker) … about two minutes", flush=True)
        print(describe(start(args.dir)))
        return 0
    if args.command == "stop":
        stopped = stop(args.dir)
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        return 0
    access = running(args.dir)
    if access is None:
        print("not running")
        return 1
    for name, pid in access.pids.items():
        print(f"{name:14} pid {pid:>7}  {'running' if _alive(pid) else 'stopped'}")
    print(describe(access))
    return 0


if __name__ == "__main__":
    sys.exit(main())
