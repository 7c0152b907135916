"""SMTP edge: build a multipart (text + HTML) message and hand it to the SMTP server over one session.

Nothing outside this module imports smtplib: a send ends in success or one of the three errors below.
"""

from __future__ import annotations

import smtplib
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from zoneinfo import ZoneInfo

from cloudbackup.edges.connections import SmtpEndpoint


class SmtpUnavailable(Exception):
    """The SMTP server could not be reached or logged into, or refused our sender: nothing was sent."""


class MessageRefused(Exception):
    """The server refused this one message (4xx/5xx for its recipients or data); the session goes on."""


class ConnectionDropped(Exception):
    """The session broke while this message was being sent: the server did not accept it."""


def describe(exc: BaseException) -> str:
    """An smtplib error as one line: its class, the server's code and text."""
    if isinstance(exc, smtplib.SMTPResponseException):
        detail = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
        return f"{type(exc).__name__}: {exc.smtp_code} {detail}"
    return f"{type(exc).__name__}: {exc}"


JST = ZoneInfo("Asia/Tokyo")


def build_message(sender: str, recipient: str, subject: str, text: str, html: str | None,
                  message_id: str, kind: str | None = None, display_name: str = "",
                  now: datetime | None = None) -> EmailMessage:
    """A service notice: From with a display name, Date on the Japan clock (+0900), the notice's own
    Message-ID; no List-Unsubscribe (a notice under the terms is not a mailing one can leave)."""
    msg = EmailMessage()
    msg["From"] = Address(display_name, addr_spec=sender) if display_name else sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Date"] = format_datetime((now or datetime.now(JST)).astimezone(JST))
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies to notices
    if kind:
        msg["X-Cloudbackup-Notice"] = kind
    msg.set_content(text, charset="utf-8")
    if html:
        msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


class Session:
    """One SMTP session, opened on the first message and reopened if the server closed it."""

    def __init__(self, ep: SmtpEndpoint, timeout: float = 30.0) -> None:
        self.ep = ep
        self.timeout = timeout
        self._smtp: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        smtp_class = smtplib.SMTP_SSL if self.ep.ssl else smtplib.SMTP
        try:
            smtp = smtp_class(self.ep.host, self.ep.port, timeout=self.timeout)
            if self.ep.starttls:
                smtp.starttls()
            if self.ep.username:
                smtp.login(self.ep.username, self.ep.password or "")
        except (OSError, smtplib.SMTPException) as exc:
            # The password is never part of the message: only host, port and the server's reply.
            raise SmtpUnavailable(f"SMTP {self.ep.host}:{self.ep.port} unavailable: "
                                  f"{type(exc).__name__}: {exc}") from exc
        return smtp

    def send(self, msg: EmailMessage) -> None:
        """Raises SmtpUnavailable (nothing sent), MessageRefused (this message) or ConnectionDropped."""
        if self._smtp is None or getattr(self._smtp, "sock", None) is None:
            self._smtp = self._open()
        try:
            self._smtp.send_message(msg)
        except smtplib.SMTPSenderRefused as exc:
            # Our sender address is the problem, not this message: nothing will go out until it is fixed.
            raise SmtpUnavailable(describe(exc)) from exc
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as exc:
            raise MessageRefused(describe(exc)) from exc
        except OSError as exc:  # smtplib.SMTPException is an OSError too
            raise ConnectionDropped(describe(exc)) from exc

    def drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

