"""SMTP edge: build a multipart (text + HTML) message and hand it to the SMTP server."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formatdate

from cloudbackup.connections import SmtpEndpoint


def build_message(sender: str, recipient: str, subject: str, text: str, html: str | None,
                  message_id: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = message_id
    msg.set_content(text, charset="utf-8")
    if html:
        msg.add_alternative(html, subtype="html", charset="utf-8")
    return msg


def send(ep: SmtpEndpoint, messages: list[EmailMessage], timeout: float = 30.0) -> None:
    """Send over one SMTP session; raises on the first refusal so the caller can record it."""
    smtp_class = smtplib.SMTP_SSL if ep.ssl else smtplib.SMTP
    with smtp_class(ep.host, ep.port, timeout=timeout) as smtp:
        if ep.starttls:
            smtp.starttls()
        if ep.username:
            smtp.login(ep.username, ep.password or "")
        for msg in messages:
            smtp.send_message(msg)
