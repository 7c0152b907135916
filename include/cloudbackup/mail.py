"""SMTP edge: build a multipart (text + HTML) notice message and hand it to the SMTP server."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formatdate

from cloudbackup.connections import SmtpEndpoint


class SmtpUnavailable(Exception):
    """The SMTP server could not be reached or logged into: nothing was sent."""


def build_message(sender: str, recipient: str, subject: str, text: str, html: str | None,
                  message_id: str, kind: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
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
        """Raises SmtpUnavailable (not sent), or an smtplib error for this message's refusal."""
        if self._smtp is None or getattr(self._smtp, "sock", None) is None:
            self._smtp = self._open()
        self._smtp.send_message(msg)

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


def send(ep: SmtpEndpoint, messages: list[EmailMessage], timeout: float = 30.0) -> None:
    """Send over one SMTP session; raises on the first refusal so the caller can record it."""
    with Session(ep, timeout) as session:
        for msg in messages:
            session.send(msg)
