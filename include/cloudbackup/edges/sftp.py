"""SFTP edge: paramiko sessions that verify the server's host key, behind the small `SftpSession` interface.

Nothing outside this module imports paramiko: the backup engine and the restorer see `SftpSession`,
`RemoteStat` and the errors below.
"""

from __future__ import annotations

import base64
import collections
import io
import socket
import stat
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import paramiko
from paramiko.buffered_pipe import BufferedPipe, PipeTimeout
from paramiko.common import cMSG_CHANNEL_WINDOW_ADJUST
from paramiko.sftp import (
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_HANDLE,
    CMD_NAME,
    CMD_OPENDIR,
    CMD_READ,
    CMD_READDIR,
    CMD_READLINK,
    CMD_STATUS,
    int64,
)

from cloudbackup.edges.connections import SftpEndpoint

# paramiko's default 2 MiB window caps throughput; 64 MiB keeps the pipe full on loopback and LAN.
WINDOW_SIZE = 64 * 1024 * 1024
MAX_PACKET_SIZE = 64 * 1024   # OpenSSH sends up to this per SSH packet: fewer, larger packets cost less CPU
READ_REQUEST = 255 * 1024     # OpenSSH serves up to 255 KiB per READ (it says so: limits@openssh.com)
READ_WINDOW = 16              # requests in flight per file: 4 MiB, enough to hide the loopback/LAN round trip
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
KEEPALIVE = 15.0              # seconds between SSH keepalives (at most a third of the timeout): NATs keep the flow


class SftpConnectError(RuntimeError):
    """The customer's server could not be reached or refused us: the whole run fails, retry is safe."""


class ConnectionLost(SftpConnectError):
    """The session died in the middle of a run (server stopped, network cut)."""


class HostKeyMismatch(SftpConnectError):
    """The server presented a key other than the one on record: possible interception."""


def _parse_private_key(text: str) -> paramiko.PKey:
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text))
        except paramiko.SSHException:
            continue
    raise SftpConnectError("the connection's private_key is not an Ed25519, ECDSA or RSA key in PEM/OpenSSH form")


def _expected_key(host_key: str) -> paramiko.PKey:
    parts = host_key.split()
    if len(parts) < 2:
        raise ValueError("host_key must be '<type> <base64>' as in known_hosts")
    return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))


@dataclass(frozen=True)
class RemoteStat:
    """What the server says of one entry: size, mtime (seconds) and the full st_mode (type and permissions)."""

    size: int
    mtime: int
    mode: int

    @classmethod
    def of(cls, attr: paramiko.SFTPAttributes) -> RemoteStat:
        return cls(attr.st_size or 0, int(attr.st_mtime or 0), attr.st_mode or 0)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def permissions(self) -> int:
        return stat.S_IMODE(self.mode)


# A transfer that failed for this file (or because the session died: ask `SftpSession.alive`).
TRANSFER_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, paramiko.SSHException)


class RemoteReader:
    """An open remote file: pipelined reads into the caller's buffer, and a fresh stat of the open handle."""

    def __init__(self, client: _BoundedSFTPClient, fh: paramiko.SFTPFile) -> None:
        self._client, self._fh = client, fh

    def read_into(self, offset: int, out: memoryview, request_size: int = READ_REQUEST,
                  window: int = READ_WINDOW) -> int:
        """Fill `out` with the file's bytes from `offset`; returns how many arrived (fewer at the end of the file)."""
        # paramiko's stubs type the handle as SFTPHandle; it is the raw handle bytes the server sent.
        return read_into(self._client, cast(bytes, self._fh.handle), offset, out, request_size, window)

    def stat(self) -> RemoteStat:
        return RemoteStat.of(self._fh.stat())


class SftpSession:
    """One SFTP session (one Transport: use it from one thread); the operations backup and restore need."""

    def __init__(self, client: _BoundedSFTPClient) -> None:
        self.client = client

    def listdir(self, path: str) -> list[tuple[bytes, RemoteStat]]:
        return [(raw, RemoteStat.of(attr)) for raw, attr in listdir_raw(self.client, path)]

    @contextmanager
    def reader(self, path: str) -> Iterator[RemoteReader]:
        with self.client.open(path, "rb") as fh:
            yield RemoteReader(self.client, fh)

    @contextmanager
    def writer(self, path: str) -> Iterator[paramiko.SFTPFile]:
        """A remote file opened for writing, with pipelined writes (`.write(bytes)`)."""
        with self.client.open(path, "wb") as out:
            out.set_pipelined(True)
            yield out

    def exists(self, path: str) -> bool:
        try:
            self.client.stat(path)
        except FileNotFoundError:
            return False
        return True

    def mkdir(self, path: str) -> None:
        self.client.mkdir(path)

    def chmod(self, path: str, mode: int) -> None:
        self.client.chmod(path, mode)

    def utime(self, path: str, mtime: int) -> None:
        self.client.utime(path, (mtime, mtime))

    def rename_over(self, source: str, target: str) -> None:
        """Atomic rename that replaces `target` (the posix-rename extension)."""
        self.client.posix_rename(source, target)

    def remove(self, path: str) -> None:
        self.client.remove(path)

    def rmdir(self, path: str) -> None:
        self.client.rmdir(path)

    def lstat(self, path: str) -> RemoteStat | None:
        """The entry itself (a link is not followed); None when nothing is there."""
        try:
            return RemoteStat.of(self.client.lstat(path))
        except FileNotFoundError:
            return None

    def readlink(self, path: str) -> bytes:
        """A symlink's target as the raw bytes the server sent (paramiko would decode them)."""
        t, msg = self.client._request(CMD_READLINK, path)  # type: ignore[attr-defined]
        if t != CMD_NAME or msg.get_int() != 1:
            raise paramiko.SFTPError(f"readlink {path!r}: unexpected answer")
        return msg.get_string()

    def symlink(self, target: str, path: str) -> None:
        """Create `path` as a symlink to `target` (OpenSSH takes the two in this order on the wire)."""
        self.client.symlink(target, path)

    def alive(self) -> bool:
        return alive(self.client)


class _ChunkPipe(BufferedPipe):
    """A channel's receive buffer that keeps the SSH packets' payloads as they came, and hands out views of them.

    paramiko's BufferedPipe appends every payload to one array, copies each read out of it twice and then moves
    everything behind it to the front: in a pipelined read with megabytes buffered that memmove was a fifth of a
    backup's CPU (perf, 2026-11-28). Reads here take whole payloads or views of them; nothing is moved.
    """

    def __init__(self) -> None:   # every method is overridden: BufferedPipe's array is never used
        self._guard = threading.Lock()
        self._arrived = threading.Condition(self._guard)
        self._hook: threading.Event | None = None
        self._ended = False
        self._views: collections.deque[memoryview] = collections.deque()
        self._size = 0
        self._want = 1      # bytes the waiting reader needs: fewer wake it for nothing (a thread switch per packet)

    def __len__(self) -> int:
        with self._guard:
            return self._size

    def set_event(self, event: threading.Event) -> None:
        with self._guard:
            self._hook = event
            if self._ended or self._size:
                event.set()
            else:
                event.clear()

    def feed(self, data: bytes | str) -> None:
        view = memoryview(data if isinstance(data, bytes) else paramiko.util.b(data))
        with self._guard:
            if self._hook is not None:
                self._hook.set()
            if len(view):
                self._views.append(view)
                self._size += len(view)
            if self._size >= self._want:
                self._arrived.notify_all()

    def read_ready(self) -> bool:
        with self._guard:
            return self._size > 0

    def take(self, nbytes: int, timeout: float | None = None, whole: bool = False) -> list[memoryview]:
        """Up to `nbytes` as views; [] once closed and drained. Waits at most `timeout` for the first byte, or with
        `whole` for all `nbytes` (what arrived by then is returned; PipeTimeout only when nothing did)."""
        with self._guard:
            want = nbytes if whole else 1
            if self._size < want and not self._ended:
                deadline = None if timeout is None else time.monotonic() + timeout
                self._want = want
                try:
                    while self._size < want and not self._ended:
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            break
                        self._arrived.wait(left)
                finally:
                    self._want = 1
                if not self._size and not self._ended:
                    raise PipeTimeout()
            out: list[memoryview] = []
            while nbytes > 0 and self._views:
                head = self._views[0]
                if len(head) <= nbytes:
                    self._views.popleft()
                else:
                    head, self._views[0] = head[:nbytes], head[nbytes:]
                out.append(head)
                nbytes -= len(head)
                self._size -= len(head)
            if not self._size and self._hook is not None and not self._ended:
                self._hook.clear()
            return out

    def read(self, nbytes: int, timeout: float | None = None) -> bytes:
        views = self.take(nbytes, timeout)
        if len(views) == 1 and isinstance(views[0].obj, bytes) and len(views[0]) == len(views[0].obj):
            return views[0].obj                      # a whole payload: no copy
        return b"".join(views)

    def empty(self) -> bytes:
        with self._guard:
            views, self._views, self._size = list(self._views), collections.deque(), 0
            if self._hook is not None and not self._ended:
                self._hook.clear()
        return b"".join(views)

    def close(self) -> None:
        with self._guard:
            self._ended = True
            self._arrived.notify_all()
            if self._hook is not None:
                self._hook.set()


class _BoundedSFTPClient(paramiko.SFTPClient):
    """An SFTP client whose channel has a timeout, and which copies READ answers straight into the caller's buffer.

    paramiko waits forever for an answer by default; with `channel.settimeout` a read raises socket.timeout, after
    which the request/answer stream is out of step, so the channel is closed (`alive()` is then False) and the
    run fails as a lost connection instead of hanging.
    """

    _read_limit: int | None = None      # the most the server sends per READ; 0 when it does not say

    def read_limit(self) -> int:
        """The server's largest READ answer, from OpenSSH's `limits@openssh.com` (OpenSSH 8.6+: 261,120 bytes), or
        the size of a short answer seen earlier on this session; 0 while unknown. Asked once per session."""
        if self._read_limit is None:
            self._read_limit = 0
            try:
                t, msg = self._request(CMD_EXTENDED, "limits@openssh.com")  # type: ignore[attr-defined]
                if t == CMD_EXTENDED_REPLY:
                    msg.get_int64()                                     # max packet length
                    self._read_limit = msg.get_int64()
            except (OSError, EOFError, paramiko.SFTPError):
                pass             # an older or other server: requests are cut to its size when its answers are short
        return self._read_limit

    def learned_read_limit(self, size: int) -> None:
        self._read_limit = size

    def _silent(self, exc: BaseException) -> ConnectionLost:
        channel = self.get_channel()
        waited = channel.gettimeout() if channel is not None else None
        if channel is not None:
            channel.close()
        return ConnectionLost(f"the SFTP server sent nothing for {waited} s (hung or unreachable); session closed")

    def _read_packet(self) -> tuple[int, bytes]:
        try:
            return super()._read_packet()  # type: ignore[misc]
        except TimeoutError as exc:
            raise self._silent(exc) from exc

    def _take(self, n: int) -> list[memoryview]:
        """Exactly `n` bytes of the SFTP stream, as views of the channel's payloads (flow control as Channel.recv)."""
        channel = self.sock
        pipe = cast(_ChunkPipe, channel.in_buffer)
        out: list[memoryview] = []
        while n > 0:
            try:
                views = pipe.take(n, channel.gettimeout(), whole=True)
            except PipeTimeout as exc:
                raise self._silent(exc) from exc
            if not views:
                raise paramiko.SSHException("Server connection dropped: the SFTP channel closed")
            got = sum(len(v) for v in views)
            ack = channel._check_add_window(got)  # type: ignore[attr-defined]
            if ack > 0:
                m = paramiko.Message()
                m.add_byte(cMSG_CHANNEL_WINDOW_ADJUST)
                m.add_int(channel.remote_chanid)
                m.add_int(ack)
                channel.transport._send_user_message(m)  # type: ignore[union-attr]
            out.extend(views)
            n -= got
        return out

    def read_answer_into(self, num: int, out: memoryview) -> int:
        """The answer to READ request `num`, copied into `out` (one copy); its length, 0 at the end of the file.

        Answers to other requests that come first are handled as paramiko's `_read_response` would.
        """
        while True:
            (size,) = struct.unpack(">I", b"".join(self._take(4)))
            if size < 5 or size > 16 * 1024 * 1024:
                raise paramiko.SFTPError("Garbage packet received")
            head = b"".join(self._take(9 if size >= 9 else 5))
            t, rid = head[0], struct.unpack(">I", head[1:5])[0]
            with self._lock:  # type: ignore[attr-defined]
                fileobj = self._expecting.pop(rid, None)  # type: ignore[attr-defined]
            if t == CMD_DATA and rid == num and len(head) == 9:
                (n,) = struct.unpack(">I", head[5:9])
                if n != size - 9 or n > len(out):
                    raise paramiko.SFTPError(f"READ answer of {n} bytes for a request of {len(out)}")
                at = 0
                for view in self._take(n):
                    out[at:at + len(view)] = view
                    at += len(view)
                return n
            msg = paramiko.Message(head[5:] + b"".join(self._take(size - len(head))))
            if rid == num:
                if t == CMD_STATUS:
                    try:
                        self._convert_status(msg)  # type: ignore[attr-defined]
                    except EOFError:
                        return 0
                raise paramiko.SFTPError(f"unexpected answer (type {t}) to a READ request")
            if fileobj is not None and fileobj is not type(None):
                fileobj._async_response(t, msg, rid)


@contextmanager
def open_sftp(ep: SftpEndpoint, timeout: float = 30.0) -> Iterator[SftpSession]:
    """An SFTP session over a Transport whose host key was checked before any credential was sent.

    Bounded in time: connecting, the handshake, authentication and opening the session together must finish
    within `timeout` seconds (a watchdog closes the Transport otherwise), every later request must be answered
    within `timeout` (the channel's timeout), and SSH keepalives flow every KEEPALIVE seconds.
    """
    expected = _expected_key(ep.host_key)
    try:
        sock = socket.create_connection((ep.host, ep.port), timeout=timeout)
    except OSError as exc:
        raise SftpConnectError(f"cannot reach SFTP server {ep.host}:{ep.port}: {exc}") from exc
    transport = paramiko.Transport(sock, default_window_size=WINDOW_SIZE,
                                   default_max_packet_size=MAX_PACKET_SIZE)
    # AES-GCM (an AEAD: no separate HMAC pass) reads ~1.5x faster than paramiko's default aes128-ctr here.
    options = transport.get_security_options()
    fast = [c for c in PREFERRED_CIPHERS if c in options.ciphers]
    options.ciphers = tuple(fast + [c for c in options.ciphers if c not in fast])
    transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout
    transport.channel_timeout = timeout
    fired = threading.Event()

    def give_up() -> None:   # a server that accepts and then says nothing
        fired.set()
        transport.close()

    watchdog = threading.Timer(timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise SftpConnectError(
                f"SSH handshake with {ep.host}:{ep.port} failed: {exc} "
                + (f"(no answer within {timeout} s)" if fired.is_set() else
                   "(an old server without modern key exchange fails here)")) from exc
        offered = transport.get_remote_server_key()
        if offered.get_name() != expected.get_name() or offered.asbytes() != expected.asbytes():
            raise HostKeyMismatch(
                f"host key of {ep.host}:{ep.port} does not match the connection's host_key: "
                f"offered {offered.get_name()} {offered.fingerprint}, expected "
                f"{expected.get_name()} {expected.fingerprint}; nothing was sent or collected")
        try:
            if ep.private_key or ep.key_file:
                key = (_parse_private_key(ep.private_key) if ep.private_key
                       else paramiko.PKey.from_path(cast(str, ep.key_file)))
                transport.auth_publickey(ep.username, key)
            else:
                transport.auth_password(ep.username, ep.password or "")
            channel = transport.open_session(window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET_SIZE,
                                             timeout=timeout)
            channel.in_buffer = _ChunkPipe()     # before the subsystem starts: nothing has arrived yet
            channel.settimeout(timeout)
            channel.invoke_subsystem("sftp")
            client = _BoundedSFTPClient(channel)
            transport.set_keepalive(max(1, int(min(KEEPALIVE, timeout / 3))))
        except paramiko.AuthenticationException as exc:
            raise SftpConnectError(f"authentication as {ep.username!r} on {ep.host}:{ep.port} failed") from exc
        except (paramiko.SSHException, EOFError, OSError) as exc:
            # The server went away between the handshake and the session (restart, crash): the run fails
            # as a connection failure, which Airflow retries, never as an unexplained EOFError.
            raise SftpConnectError(f"connection to {ep.host}:{ep.port} lost while opening the SFTP session: "
                                   f"{type(exc).__name__} {exc}"
                                   + (f" (no answer within {timeout} s)" if fired.is_set() else "")
                                   ) from exc
        finally:
            watchdog.cancel()
        if fired.is_set() and not transport.is_active():
            raise SftpConnectError(f"{ep.host}:{ep.port} did not open the SFTP session within {timeout} s")
        with client:
            yield SftpSession(client)
    finally:
        watchdog.cancel()
        transport.close()


def listdir_raw(sftp: paramiko.SFTPClient, path: str) -> list[tuple[bytes, paramiko.SFTPAttributes]]:
    """Directory entries with names as the raw bytes the server sent.

    paramiko's listdir_attr decodes names as strict UTF-8, so one non-UTF-8 name would fail the whole
    folder; the file-name policy (art. 18(2)) must see and report such a name instead.
    """
    t, msg = sftp._request(CMD_OPENDIR, path)  # type: ignore[attr-defined]
    if t != CMD_HANDLE:
        raise paramiko.SFTPError("Expected handle")
    handle = msg.get_binary()
    entries: list[tuple[bytes, paramiko.SFTPAttributes]] = []
    try:
        while True:
            try:
                t, msg = sftp._request(CMD_READDIR, handle)  # type: ignore[attr-defined]
            except EOFError:
                break
            if t != CMD_NAME:
                raise paramiko.SFTPError("Expected name response")
            for _ in range(msg.get_int()):
                raw = msg.get_string()
                longname = msg.get_string()
                attr = paramiko.SFTPAttributes._from_msg(msg, raw.decode("utf-8", "surrogateescape"), longname)  # type: ignore[attr-defined]
                if raw not in (b".", b".."):
                    entries.append((raw, attr))
    finally:
        sftp._request(CMD_CLOSE, handle)  # type: ignore[attr-defined]
    return entries


def alive(sftp: paramiko.SFTPClient) -> bool:
    channel = sftp.get_channel()
    return bool(channel is not None and not channel.closed and channel.get_transport().is_active())




def _send_read(sftp: paramiko.SFTPClient, handle: bytes, pending: collections.deque, at: int, n: int) -> int:
    pending.append((sftp._async_request(type(None), CMD_READ, handle, int64(at), int(n)), at, n))  # type: ignore[attr-defined]
    return at + n


def read_into(sftp: _BoundedSFTPClient, handle: bytes, offset: int, out: memoryview,
              request_size: int = READ_REQUEST, window: int = READ_WINDOW) -> int:
    """Fill `out` with the bytes from `offset`, `window` read requests in flight; returns how many arrived.

    paramiko's own prefetch rescans its whole buffer for every 32 KiB piece (quadratic on big reads) and
    keeps everything that arrived until it is read; this keeps at most `window` × `request_size` in flight and
    copies each answer once, into `out`. Requests are no larger than the server's READ limit when it is known. A
    short answer (a server with a smaller limit) restarts the pipeline with that size, which the session then
    keeps when the data went on past it; an empty answer is the end of the file, and the caller gets fewer bytes
    than it asked for.
    """
    limit = sftp.read_limit()
    if limit > 0:
        request_size = min(request_size, limit)
    end = offset + len(out)
    position = offset
    suspect = 0                                # a short answer's size: the server's limit, or the end of the file
    while position < end:
        pending: collections.deque[tuple[int, int, int]] = collections.deque()
        next_offset = position
        short = eof = False

        while next_offset < end and len(pending) < window:
            next_offset = _send_read(sftp, handle, pending, next_offset, min(request_size, end - next_offset))
        while pending:
            num, at, n = pending.popleft()
            if short:                         # answers to requests sent before the short one: read and dropped
                sftp.read_answer_into(num, memoryview(bytearray(n)))
                continue
            got = sftp.read_answer_into(num, out[at - offset:at - offset + n])
            if got and suspect:
                sftp.learned_read_limit(suspect)      # the file went on: it was the server's limit
                suspect = 0
            if got < n:
                short, eof = True, not got
                if got:
                    position = at + got
                    request_size = suspect = got
                continue
            position = at + n
            if next_offset < end:
                next_offset = _send_read(sftp, handle, pending, next_offset, min(request_size, end - next_offset))
        if eof:
            break
    return position - offset
