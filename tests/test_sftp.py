"""The SFTP edge: every way the customer's server can go away is a connection failure (a clean retry)."""

from __future__ import annotations

import paramiko
import pytest
from backup_support import connector
from devtools import devstack

from cloudbackup.edges.sftp import SftpConnectError


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
