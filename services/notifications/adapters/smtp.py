"""Email over SMTP: the MIME message an advocate receives, handed to the relay by aiosmtplib.

Each message has `Message-ID: <notification_id@domain>`, so a resend after a crash carries the
id of the first attempt and the receiving side (or a mail client) can drop it. It has a plain
text part and, when the template has one, an HTML alternative; `List-Unsubscribe` with the
signed link and `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058) let mail clients
offer their own unsubscribe button.
"""

from __future__ import annotations

import asyncio
import binascii
import random
import re
import socket
from datetime import datetime
from email import policy
from email.errors import HeaderParseError
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import (
    COMMAND_INJECTION_REGEX,
    PERIOD_REGEX,
    SMTPProtocol,
    normalize_message_line_endings,
)
from aiosmtplib.response import SMTPResponse

from services.notifications.adapters.config import NotificationsSettings
from services.notifications.adapters.failures import (
    RECIPIENT_REFUSED,
    PermanentFailure,
    TransientFailure,
)
from services.notifications.domain.messages import Message, RenderedMessage

SMTP_POLICY = policy.SMTP.clone(max_line_length=998)
CRLF = "\r\n"
# RFC 5322 allows 998 characters a line; a body line longer than that is quoted-printable.
MAX_LINE = 998
# A dot-atom address (RFC 5322 atext, dots between): the email package parses every one of them
# as it is written, so it is checked here without the parser (~150 us an address). Anything
# else (quoted local parts, domain literals, mistakes) goes through the parser as before.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_ATEXT}(?:\.{_ATEXT})*")
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')  # a display name holding one is quoted
_ESCAPES = re.compile(r'[\\"]')


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
) -> bytes:
    """The MIME message as sent (CRLF lines); PermanentFailure for an address or name that
    cannot be a header.

    Written directly rather than through `email.message.EmailMessage`, whose header registry
    and generator cost about 5 ms a message (most of the service's CPU time under load). The
    result is the same message: the headers below, 7bit text when every line is ASCII and fits,
    quoted-printable UTF-8 otherwise (so no server needs 8BITMIME), non-ASCII header text as
    RFC 2047 encoded words. RFC 5322 allows 998-character lines, so the List-Unsubscribe URL
    (longer than 78) is never folded into an encoded word a mail client could not read.
    """
    # A line break in a display name (it comes from a profile) must not split the header.
    name = " ".join(message.display_name.split())
    headers = [
        f"Message-ID: {message_id(message.notification_id, domain)}",
        f"Date: {format_datetime(now)}",
        _from_header(from_address),
        f"To: {_to(name, message.email.strip())}",
        f"Subject: {_unstructured(rendered.subject, 'Subject')}",
        f"List-Unsubscribe: <{_unstructured(unsubscribe_url, 'List-Unsubscribe')}>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "Auto-Submitted: auto-generated",  # RFC 3834: no vacation replies, please
        f"X-Referrals-Kind: {message.kind.value}",
        "MIME-Version: 1.0",
    ]
    if rendered.html is None:
        return _join([*headers, *_text_part(rendered.text, "plain")])
    boundary = f"==============={random.getrandbits(64):020d}=="
    return _join(
        [
            *headers,
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
            "",
            f"--{boundary}",
            *_text_part(rendered.text, "plain"),
            f"--{boundary}",
            *_text_part(rendered.html, "html"),
            f"--{boundary}--",
            b"",
        ]
    )


def _join(lines: list[str | bytes]) -> bytes:
    """The lines as the wire carries them (an address may be UTF-8: sent with SMTPUTF8)."""
    return b"\r\n".join(line if isinstance(line, bytes) else line.encode() for line in lines)


def _text_part(text: str, subtype: str) -> list[str | bytes]:
    """A text part's headers, a blank line and its body, ending in a line break."""
    lines = text.encode().splitlines()  # as the email package splits: CR, LF or CRLF
    if all(line.isascii() and len(line) <= MAX_LINE for line in lines):
        cte, body = "7bit", b"\r\n".join(lines)
    else:
        encoded = binascii.b2a_qp(b"\n".join(lines), istext=True)
        cte, body = "quoted-printable", encoded.replace(b"\n", b"\r\n")
    return [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        f"Content-Transfer-Encoding: {cte}",
        "",
        body,
        b"",
    ]


def _unstructured(value: str, header: str) -> str:
    """Header text as it is when printable ASCII that fits a line, else encoded words."""
    if value.isascii() and value.isprintable() and len(value) + len(header) < MAX_LINE - 4:
        return value
    return Header(value, "utf-8", header_name=header).encode(linesep=CRLF)


def _to(name: str, address: str) -> str:
    """`Name <address>`; PermanentFailure for an address the header cannot hold."""
    if _DOT_ATOM_ADDRESS.fullmatch(address) is None:
        try:  # the email package's parser decides, as it always has
            address = Address(addr_spec=address).addr_spec
        except (ValueError, IndexError, HeaderParseError) as err:  # "a@b\nBcc: ...", "a@b@c"
            raise PermanentFailure("BAD_ADDRESS", f"cannot build the headers: {err}") from err
    if not name:
        return address
    if name.isascii() and name.isprintable():
        if _SPECIALS.search(name):
            name = '"' + _ESCAPES.sub(r"\\\g<0>", name) + '"'
    else:
        name = Header(name, "utf-8").encode(linesep=CRLF)
    return f"{name} <{address}>"


@lru_cache(maxsize=256)
def _from_header(from_address: str) -> str:
    """The program's From header, checked and folded by the email package once per address."""
    email = EmailMessage(policy=SMTP_POLICY)
    try:
        email["From"] = from_address
        folded: str = SMTP_POLICY.fold("From", email["From"])
        return folded.rstrip(CRLF)
    except (ValueError, IndexError, HeaderParseError) as err:
        raise PermanentFailure("BAD_ADDRESS", f"cannot build the headers: {err}") from err


class SmtpTransport:
    """Sends emails to the configured relay over a pool of persistent SMTP sessions.

    A session per message costs a TCP connect, EHLO (and STARTTLS, AUTH) and QUIT each time;
    reusing sessions roughly doubles throughput. Concurrency is bounded by the sender's
    per-destination slots, so the pool never holds more than smtp_max_connections sessions.
    A session that fails in any way is closed, never reused. The name this host gives in EHLO
    is looked up once (aiosmtplib would ask for it, in a thread, on every new session).
    """

    def __init__(self, settings: NotificationsSettings) -> None:
        self.settings = settings
        self._idle: list[aiosmtplib.SMTP] = []
        self._local_hostname: str | None = None

    async def send(self, email: bytes, sender: str, recipient: str) -> None:
        """Hands `email` (as `build_email` wrote it) to the relay for `recipient`."""
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

    async def _send(self, email: bytes, sender: str, recipient: str) -> None:
        reused = bool(self._idle)
        client = self._idle.pop() if reused else await self._connect()
        try:
            await _transact(client, email, sender, recipient)
        except aiosmtplib.SMTPServerDisconnected:
            client.close()
            if not reused:
                raise
            # The relay closed a session while it sat idle in the pool: one fresh try.
            client = await self._connect()
            try:
                await _transact(client, email, sender, recipient)
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
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(ehlo_name)
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            start_tls=s.smtp_starttls,
            use_tls=s.smtp_tls,
            validate_certs=s.smtp_validate_certs,
            timeout=s.smtp_timeout_s,
            local_hostname=self._local_hostname,
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


def ehlo_name() -> str:
    """The name this host gives in EHLO (what aiosmtplib would look up for each session)."""
    return socket.getfqdn()


async def _transact(client: aiosmtplib.SMTP, email: bytes, sender: str, recipient: str) -> None:
    """One mail transaction (MAIL, RCPT, DATA), as aiosmtplib's `sendmail` runs it but with each
    address parsed once per program or not at all (a dot-atom): its `sendmail` parses both four
    times, ~150 us each, the largest CPU cost of a message after the email itself. SMTPUTF8 for
    an address that is not ASCII (refused if the relay cannot take one); SIZE when the relay
    announces it. The message is 7bit, so no 8BITMIME. With a relay that announces PIPELINING
    (RFC 2920: Postfix, Exim, the large sending services do), MAIL, RCPT and DATA go out in one
    write and the message in a second: two round trips a message instead of four. No RSET after
    a refusal: the transport closes a session that failed in any way."""
    if client.is_ehlo_or_helo_needed:  # the extensions are known after EHLO
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
    options: list[bytes] = []
    encoding = "ascii"
    if not (sender.isascii() and recipient.isascii()):
        if not client.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported(
                "an address holds non-ASCII characters and the relay does not support SMTPUTF8"
            )
        options.append(b"SMTPUTF8")
        encoding = "utf-8"
    if client.supports_extension("size"):  # the bytes as sent: the lines are CRLF already
        options.insert(0, f"SIZE={len(email)}".encode())
    mail_from = b"FROM:" + _envelope_address(sender).encode(encoding)
    rcpt_to = b"TO:" + _recipient(recipient).encode(encoding)
    if client.supports_extension("pipelining"):
        mail, rcpt = (b"MAIL", mail_from, *options), (b"RCPT", rcpt_to)
        await _pipelined(client, mail, rcpt, email, sender, recipient)
        return
    response = await client.execute_command(b"MAIL", mail_from, *options)
    _check_mail(response, sender)
    response = await client.execute_command(b"RCPT", rcpt_to)
    _check_rcpt(response, recipient)
    await client.data(email)


async def _pipelined(
    client: aiosmtplib.SMTP,
    mail: tuple[bytes, ...],
    rcpt: tuple[bytes, ...],
    email: bytes,
    sender: str,
    recipient: str,
) -> None:
    """MAIL, RCPT and DATA in one write; their three replies read in order, each judged as the
    one-at-a-time path judges it (a refused MAIL is reported as such, not as the 503s that
    follow it); then the message and its reply. The replies may come in one segment or
    several: the session's protocol becomes a `_PipeliningProtocol`, which keeps a reply that
    arrives before the last one was taken (aiosmtplib's drops it), and each read looks in the
    buffer first. A timeout or a lost connection closes the session, as aiosmtplib's own
    commands do."""
    protocol = client.protocol
    lock = None if protocol is None else protocol._command_lock
    if protocol is None or lock is None:
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    for arg in (*mail, *rcpt):
        if COMMAND_INJECTION_REGEX.search(arg):  # what aiosmtplib refuses in a command
            raise ValueError("Command arg contains a prohibited control character")
    commands = b" ".join(mail) + b"\r\n" + b" ".join(rcpt) + b"\r\nDATA\r\n"
    # as aiosmtplib's DATA sends it: CRLF lines, a leading dot doubled, the final dot
    message = _data(email)
    timeout = client.timeout
    try:
        async with lock:  # nothing else on this session meanwhile
            if not isinstance(protocol, _PipeliningProtocol):
                protocol.__class__ = _PipeliningProtocol  # the same object, keeping more
            assert isinstance(protocol, _PipeliningProtocol)
            protocol.outstanding = 3
            protocol._response_pending = True
            protocol.write(commands)
            replies: list[SMTPResponse] = []
            while protocol.outstanding:
                replies.append(await _reply(protocol, timeout))
                protocol.outstanding -= 1
            _check_mail(replies[0], sender)
            _check_rcpt(replies[1], recipient)
            if replies[2].code != 354:
                raise aiosmtplib.SMTPDataError(replies[2].code, replies[2].message)
            protocol._response_pending = True
            protocol.write(message)
            done = await _reply(protocol, timeout)
            if done.code != 250:
                raise aiosmtplib.SMTPDataError(done.code, done.message)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()
        raise
    finally:
        if isinstance(protocol, _PipeliningProtocol):
            protocol.outstanding = 0


def _data(email: bytes) -> bytes:
    """`email` as aiosmtplib's DATA sends it: CRLF lines, a leading dot doubled, the final dot.
    `build_email` writes CRLF lines and few lines begin with a dot, so each rewrite runs only
    when a scan (in C, a few us) finds it needed; the regular expressions took 4% of
    notifications' samples rewriting messages into themselves."""
    crlf = email.count(b"\r\n")
    if crlf != email.count(b"\n") or crlf != email.count(b"\r") or not email.endswith(b"\r\n"):
        email = normalize_message_line_endings(email)
    if email.startswith(b".") or b"\n." in email:
        email = PERIOD_REGEX.sub(b"..", email)
    return email + b".\r\n"


class _PipeliningProtocol(SMTPProtocol):
    """aiosmtplib's protocol, keeping the replies of a pipelined group. aiosmtplib's drops data
    that arrives while no command awaits a reply, or while the last reply has not been taken
    (so that a stray line is never paired with the next command): between two replies of one
    group, which a relay may send in separate segments, that window is open for a loop turn or
    two. While `outstanding` replies are due, such data is kept in the buffer, where `_reply`
    looks first; otherwise this is aiosmtplib's protocol unchanged."""

    outstanding = 0  # replies of a pipelined group not taken yet

    def data_received(self, data: bytes) -> None:
        waiter = self._response_waiter
        dropped_by_aiosmtplib = waiter is not None and (waiter.done() or not self._response_pending)
        if self.outstanding and dropped_by_aiosmtplib:
            self._buffer.extend(data)  # the group's next reply: `_reply` takes it
            return
        super().data_received(data)


async def _reply(protocol: SMTPProtocol, limit_s: float | None) -> SMTPResponse:
    """The next reply: one already buffered (a pipelined group's replies often come in one
    segment, and the protocol parses one per segment), else the next to arrive."""
    buffered = protocol._read_response_from_buffer() if protocol._buffer else None
    if buffered is not None:
        return buffered
    return await protocol.read_response(timeout=limit_s)


def _check_mail(response: SMTPResponse, sender: str) -> None:
    if response.code != 250:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)


def _check_rcpt(response: SMTPResponse, recipient: str) -> None:
    if response.code not in (250, 251):
        refused = aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)
        raise aiosmtplib.SMTPRecipientsRefused([refused])


@lru_cache(maxsize=256)
def _envelope_address(address: str) -> str:
    """`<addr>` for MAIL FROM, from a program's From ("Name <addr>" or "addr"); ValueError for
    one that cannot be sent on a command line (as aiosmtplib says)."""
    return quote_address(address)


def _recipient(address: str) -> str:
    """`<addr>` for RCPT TO: a dot-atom as it is, anything else as aiosmtplib parses it."""
    if _DOT_ATOM_ADDRESS.fullmatch(address) is not None:
        return f"<{address}>"
    return quote_address(address)


def _by_code(code: int, text: str, what: str) -> TransientFailure | PermanentFailure:
    """4xx: try again later; 5xx (and anything else): the server will never take it."""
    detail = f"{what}: {code} {text}"[:300]
    if 400 <= code < 500:
        return TransientFailure("SMTP_4XX", detail)
    return PermanentFailure("SMTP_REJECTED", detail)
