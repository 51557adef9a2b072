"""Email over SMTP: the MIME message an advocate receives, handed to the relay by aiosmtplib.

Each message has `Message-ID: <notification_id@domain>`, so a resend after a crash carries the
id of the first attempt and the receiving side (or a mail client) can drop it. It has a plain
text part and, when the template has one, an HTML alternative; `List-Unsubscribe` with the
signed link and `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058) let mail clients
offer their own unsubscribe button.
"""

from __future__ import annotations

from datetime import datetime
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from services.notifications.adapters.config import NotificationsSettings
from services.notifications.adapters.failures import (
    RECIPIENT_REFUSED,
    PermanentFailure,
    TransientFailure,
)
from services.notifications.domain.messages import Message, RenderedMessage

SMTP_POLICY = policy.SMTP.clone(max_line_length=998)


def message_id(notification_id: str, domain: str) -> str:
    return f"<{notification_id}@{domain}>"


def build_email(
    message: Message,
    rendered: RenderedMessage,
    *,
    from_address: str,
    domain: str,
    unsubscribe_url: str,
    now: datetime,
) -> EmailMessage:
    """The MIME message; PermanentFailure for an address or name that cannot be a header."""
    # RFC 5322 allows 998-character lines. The default policy folds at 78 by turning a long
    # unbreakable word into an RFC 2047 encoded word, which would make the List-Unsubscribe
    # URL unreadable to mail clients.
    email = EmailMessage(policy=SMTP_POLICY)
    try:
        email["Message-ID"] = message_id(message.notification_id, domain)
        email["Date"] = format_datetime(now)
        email["From"] = from_address
        # A line break in a display name (it comes from a profile) must not split the header.
        name = " ".join(message.display_name.split())
        email["To"] = Address(display_name=name, addr_spec=message.email.strip())
        email["Subject"] = rendered.subject
        email["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
        email["X-Referrals-Kind"] = message.kind.value
    except (ValueError, IndexError, HeaderParseError) as err:  # "a@b\nBcc: ...", "a@b@c"
        raise PermanentFailure("BAD_ADDRESS", f"cannot build the headers: {err}") from err
    email.set_content(rendered.text)
    if rendered.html is not None:
        email.add_alternative(rendered.html, subtype="html")
    return email


class SmtpTransport:
    """Sends emails to the configured relay over a pool of persistent SMTP sessions.

    A session per message costs a TCP connect, EHLO (and STARTTLS, AUTH) and QUIT each time;
    reusing sessions roughly doubles throughput. Concurrency is bounded by the sender's
    per-destination slots, so the pool never holds more than smtp_max_connections sessions.
    A session that fails in any way is closed, never reused.
    """

    def __init__(self, settings: NotificationsSettings) -> None:
        self.settings = settings
        self._idle: list[aiosmtplib.SMTP] = []

    async def send(self, email: EmailMessage, sender: str, recipient: str) -> None:
        try:
            await self._send(email, sender, recipient)
        except aiosmtplib.SMTPRecipientsRefused as err:
            refused = err.recipients[0] if err.recipients else None
            code = refused.code if refused is not None else 550
            text = refused.message if refused else str(err)
            if 500 <= code < 600:  # the relay will never take mail for this address
                detail = f"recipient: {code} {text}"[:300]
                raise PermanentFailure(RECIPIENT_REFUSED, detail) from err
            raise _by_code(code, text, "recipient") from err
        except aiosmtplib.SMTPAuthenticationError as err:
            raise PermanentFailure("SMTP_AUTH", f"{err.code} {err.message}") from err
        except aiosmtplib.SMTPResponseException as err:
            raise _by_code(err.code, err.message, type(err).__name__) from err
        except aiosmtplib.SMTPNotSupported as err:
            raise PermanentFailure("SMTP_CONFIG", str(err)) from err
        except (aiosmtplib.SMTPTimeoutError, TimeoutError) as err:
            raise TransientFailure("TIMEOUT", str(err) or "timed out") from err
        except (aiosmtplib.SMTPException, OSError) as err:  # refused, reset, disconnected
            raise TransientFailure("CONNECTION", str(err) or type(err).__name__) from err

    async def _send(self, email: EmailMessage, sender: str, recipient: str) -> None:
        reused = bool(self._idle)
        client = self._idle.pop() if reused else await self._connect()
        try:
            await client.send_message(email, sender=sender, recipients=[recipient])
        except aiosmtplib.SMTPServerDisconnected:
            client.close()
            if not reused:
                raise
            # The relay closed a session while it sat idle in the pool: one fresh try.
            client = await self._connect()
            try:
                await client.send_message(email, sender=sender, recipients=[recipient])
            except BaseException:
                client.close()
                raise
        except BaseException:
            client.close()
            raise
        if len(self._idle) < self.settings.smtp_max_connections:
            self._idle.append(client)
        else:
            client.close()

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            start_tls=s.smtp_starttls,
            use_tls=s.smtp_tls,
            validate_certs=s.smtp_validate_certs,
            timeout=s.smtp_timeout_s,
        )
        await client.connect()
        return client

    async def close(self) -> None:
        """Ends every idle session politely (QUIT)."""
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()


def _by_code(code: int, text: str, what: str) -> TransientFailure | PermanentFailure:
    """4xx: try again later; 5xx (and anything else): the server will never take it."""
    detail = f"{what}: {code} {text}"[:300]
    if 400 <= code < 500:
        return TransientFailure("SMTP_4XX", detail)
    return PermanentFailure("SMTP_REJECTED", detail)
