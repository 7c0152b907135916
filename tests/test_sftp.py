"""The SFTP edge: every way the customer's server can go away is a connection failure (a clean retry); pipelined
reads return exactly the file's bytes."""

from __future__ import annotations

import os
import threading
import time

import paramiko
import pytest
from backup_support import connector
from devtools import devstack
from paramiko.buffered_pipe import PipeTimeout

from cloudbackup.edges.sftp import SftpConnectError, _ChunkPipe


@pytest.mark.parametrize("failure", [EOFError(), paramiko.SSHException("channel closed"), OSError("reset")])
def test_the_server_vanishing_before_the_session_opens_is_a_connection_failure(
        stack: devstack.Stack, monkeypatch: pytest.MonkeyPatch, failure: Exception) -> None:
    """Seen when sshd stops mid-run while a parallel session is being opened: the handshake and login
    succeed against the real sshd, then the session request meets a closed socket."""
    def vanished(*_args: object, **_kwargs: object) -> None:
        raise failure

    monkeypatch.setattr(paramiko.Channel, "invoke_subsystem", vanished)   # open_sftp's session request
    with pytest.raises(SftpConnectError, match="lost while opening the SFTP session"), connector(stack.sshd)():
        pass


# -- the read path: pipelined READs copied straight into the caller's buffer -----------------------------------

def _remote_file(stack: devstack.Stack, name: str, size: int) -> bytes:
    data = os.urandom(size)
    (stack.sshd.root / name).write_bytes(data)
    return data


@pytest.mark.parametrize(("request_size", "window", "told"), [(128 * 1024, 32, True), (32 * 1024, 3, True),
                                                              (1024 * 1024, 8, True), (1024 * 1024, 8, False)])
def test_a_pipelined_read_returns_exactly_the_files_bytes(stack: devstack.Stack, request_size: int,
                                                          window: int, told: bool) -> None:
    """Every byte of a large file, at odd offsets and lengths, as the server holds it. 1 MiB requests are more than
    OpenSSH serves (255 KiB): it says so (`limits@openssh.com`) and requests are cut to that. A server that does
    not say (`told` False): its short answers restart the pipeline with their size, the answers already on their
    way are read and dropped, so the stream never falls out of step, and the session keeps the smaller size."""
    data = _remote_file(stack, "pipelined.bin", 5 * 1024 * 1024 + 12_345)
    with connector(stack.sshd)() as sftp, sftp.reader("/pipelined.bin") as fh:
        assert sftp.client.read_limit() == 255 * 1024          # OpenSSH 8.6+ (Debian 12: 9.2)
        if not told:
            sftp.client.learned_read_limit(0)
        learned: list[int] = []
        learn = sftp.client.learned_read_limit
        sftp.client.learned_read_limit = lambda size: learned.append(size) or learn(size)  # type: ignore[method-assign]
        for offset, length in [(0, len(data)), (7, 3 * 1024 * 1024 + 1), (len(data) - 100, 100), (4096, 1)]:
            buffer = bytearray(length)
            assert fh.read_into(offset, memoryview(buffer), request_size, window) == length
            assert buffer == data[offset:offset + length]
        # The session is still in step: a plain paramiko request after the pipelined reads works.
        assert fh.stat().size == len(data)
        assert sftp.client.read_limit() == 255 * 1024           # told, or learned from the short answers
        assert learned == ([] if told else [255 * 1024])       # told: no request was ever larger


def test_a_read_past_the_end_of_the_file_returns_what_there_is(stack: devstack.Stack) -> None:
    """A file that shrank after it was listed: fewer bytes than asked for (the archiver's changed_during_read)."""
    data = _remote_file(stack, "shrunk.bin", 300_000)
    with connector(stack.sshd)() as sftp, sftp.reader("/shrunk.bin") as fh:
        sftp.client.learned_read_limit(0)
        buffer = bytearray(1024 * 1024)
        assert fh.read_into(0, memoryview(buffer), 64 * 1024, 8) == len(data)
        assert buffer[:len(data)] == data
        assert fh.read_into(len(data), memoryview(bytearray(10)), 64 * 1024, 8) == 0
        assert sftp.client.read_limit() == 0       # the end of a file is not taken for a limit of the server


def test_the_channel_buffer_hands_out_the_payloads_in_order_without_losing_a_byte() -> None:
    """The receive buffer that replaces paramiko's (unit: no server needed)."""
    pipe = _ChunkPipe()
    for piece in (b"abc", b"defgh", b"", b"ij"):
        pipe.feed(piece)
    assert len(pipe) == 10
    assert [bytes(v) for v in pipe.take(4)] == [b"abc", b"d"]
    assert pipe.read(4) == b"efgh"            # the rest of a payload
    assert pipe.read_ready() and pipe.read(1) == b"i"
    assert pipe.empty() == b"j" and len(pipe) == 0


def test_the_channel_buffer_waits_for_what_is_asked_and_times_out_only_on_silence() -> None:
    pipe = _ChunkPipe()
    with pytest.raises(PipeTimeout):
        pipe.take(10, timeout=0.05)
    pipe.feed(b"12345")
    # Asked for 10 whole bytes, 5 arrived: after the timeout it returns those 5 instead of failing.
    assert b"".join(pipe.take(10, timeout=0.05, whole=True)) == b"12345"
    threading.Timer(0.05, pipe.feed, args=(b"67890",)).start()
    pipe.feed(b"abc")
    started = time.monotonic()
    assert b"".join(pipe.take(8, timeout=5, whole=True)) == b"abc67890"
    assert time.monotonic() - started < 4
    pipe.close()
    assert pipe.take(1, timeout=5) == [] and pipe.read(1) == b""
