"""SMTP PIPELINING (RFC 2920): to a relay that announces it, MAIL, RCPT and DATA go out in one
write, and a message takes two round trips instead of four; to one that does not, a command
waits for the last one's reply. Either way a refusal is judged the same, replies are read
whether they come in one segment or one by one, and a session carries message after message.

The relay here is a small asyncio SMTP server that notes, for each command, how many replies
it had written when the command arrived: the client pipelined exactly when RCPT and DATA
arrive before MAIL's reply has gone out (each reply is held back a little so a client that
waits cannot be mistaken for one that does not)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiosmtplib.errors import SMTPReadTimeoutError
from aiosmtplib.protocol import PERIOD_REGEX, SMTPProtocol, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st

from services.notifications.adapters import smtp
from services.notifications.adapters.config import NotificationsSettings
from services.notifications.adapters.failures import PermanentFailure, TransientFailure

SENDER, RECIPIENT = "program@example.com", "ada@example.com"
EMAIL = b"Subject: hi\r\n\r\nfirst line\r\n.a line that starts with a dot\r\nlast\r\n"


@dataclass
class Relay:
    pipelining: bool = True
    one_segment: bool = True  # all replies a read asks for in one write, else one by one
    codes: dict[bytes, int] = field(default_factory=dict)  # b"MAIL" -> 550 ...; b"." the end
    silent: bytes | None = None  # a command never answered (the client times out)
    hold_s: float = 0.05
    seen: list[tuple[bytes, int]] = field(default_factory=list)  # (verb, replies written)
    messages: list[bytes] = field(default_factory=list)  # accepted ones
    sessions: int = 0
    replies: int = 0

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        writer.write(b"220 test ESMTP\r\n")
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):  # the server closing
            await self._commands(reader, writer)
        writer.close()

    async def _commands(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            arrived = self.replies  # replies written when these lines arrived
            buffer = chunk
            out: list[bytes] = []
            while buffer:
                line, sep, buffer = buffer.partition(b"\r\n")
                if not sep:  # a partial command line: wait for the rest
                    buffer = line + (await reader.read(65536))
                    arrived = self.replies
                    continue
                verb = line[:4].upper()
                self.seen.append((verb, arrived))
                if verb == self.silent:
                    await asyncio.sleep(3600)
                if verb == b"DATA" and self.codes.get(b"DATA", 354) == 354:
                    out.append(b"354 go ahead\r\n")
                    body, end, buffer = buffer.partition(b"\r\n.\r\n")
                    await self._flush(writer, out)
                    while not end:  # the message comes after the 354
                        body += await reader.read(65536)
                        body, end, buffer = body.partition(b"\r\n.\r\n")
                    self.seen.append((b".", self.replies))
                    final = self.codes.get(b".", 250)
                    if final == 250:  # accepted
                        self.messages.append(body + b"\r\n")
                    out.append(b"%d done\r\n" % final)
                    continue
                out.append(self._reply(verb))
                if not self.one_segment:
                    await self._flush(writer, out)
            await self._flush(writer, out)

    def _reply(self, verb: bytes) -> bytes:
        if verb == b"EHLO":
            extensions = b"250-test\r\n250-SIZE 1000000\r\n"
            return (
                extensions + (b"250-PIPELINING\r\n" if self.pipelining else b"") + b"250 HELP\r\n"
            )
        if verb == b"QUIT":
            return b"221 bye\r\n"
        code = self.codes.get(verb, 250 if verb != b"DATA" else 354)
        return b"%d reply to %s\r\n" % (code, verb)

    async def _flush(self, writer: asyncio.StreamWriter, out: list[bytes]) -> None:
        if out:
            await asyncio.sleep(self.hold_s)
            for reply in out:
                writer.write(reply)
                self.replies += 1
                if not self.one_segment:
                    await writer.drain()
                    await asyncio.sleep(0.01)  # each reply its own segment
            out.clear()
            await writer.drain()

    def replies_before(self, verb: bytes, nth: int = 0) -> int:
        return [n for v, n in self.seen if v == verb][nth]


@contextlib.asynccontextmanager
async def serving(relay: Relay, **settings: object) -> AsyncIterator[smtp.SmtpTransport]:
    server = await asyncio.start_server(relay.session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = smtp.SmtpTransport(
        NotificationsSettings(smtp_port=port, **settings)  # type: ignore[arg-type]
    )
    try:
        yield transport
    finally:
        await transport.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("one_segment", [True, False], ids=["replies-together", "one-by-one"])
async def test_to_a_pipelining_relay_mail_rcpt_and_data_go_out_before_any_reply(
    one_segment: bool,
) -> None:
    relay = Relay(one_segment=one_segment)
    async with serving(relay) as transport:
        for _ in range(3):  # one session, message after message
            await transport.send(EMAIL, SENDER, RECIPIENT)
    assert relay.sessions == 1
    assert relay.messages == [EMAIL.replace(b"\r\n.a", b"\r\n..a")] * 3  # dot-stuffed
    for nth in range(3):
        mail = relay.replies_before(b"MAIL", nth)
        assert relay.replies_before(b"RCPT", nth) == mail  # sent without waiting
        assert relay.replies_before(b"DATA", nth) == mail
        assert relay.replies_before(b".", nth) == mail + 3  # the message after DATA's 354


async def test_to_a_relay_without_pipelining_each_command_waits_for_the_last_reply() -> None:
    relay = Relay(pipelining=False)
    async with serving(relay) as transport:
        await transport.send(EMAIL, SENDER, RECIPIENT)
    mail = relay.replies_before(b"MAIL")
    assert relay.replies_before(b"RCPT") == mail + 1
    assert relay.replies_before(b"DATA") == mail + 2
    assert relay.messages == [EMAIL.replace(b"\r\n.a", b"\r\n..a")]


@pytest.mark.parametrize(
    ("codes", "failure", "reason", "says"),
    [
        ({b"MAIL": 550, b"RCPT": 503, b"DATA": 503}, PermanentFailure, "SMTP_REJECTED", "550"),
        ({b"MAIL": 451, b"RCPT": 503, b"DATA": 503}, TransientFailure, "SMTP_4XX", "451"),
        ({b"RCPT": 550, b"DATA": 554}, PermanentFailure, "RECIPIENT_REFUSED", "550"),
        ({b"RCPT": 452, b"DATA": 554}, TransientFailure, "SMTP_4XX", "452"),
        ({b"DATA": 554}, PermanentFailure, "SMTP_REJECTED", "554"),
        ({b".": 451}, TransientFailure, "SMTP_4XX", "451"),
    ],
    ids=["mail-5xx", "mail-4xx", "rcpt-5xx", "rcpt-4xx", "data-5xx", "message-4xx"],
)
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-at-a-time"])
async def test_a_refusal_is_judged_by_the_first_command_refused_either_way(
    pipelining: bool, codes: dict[bytes, int], failure: type, reason: str, says: str
) -> None:
    relay = Relay(pipelining=pipelining, codes=codes, hold_s=0.0)
    async with serving(relay) as transport:
        with pytest.raises((PermanentFailure, TransientFailure)) as raised:
            await transport.send(EMAIL, SENDER, RECIPIENT)
        assert type(raised.value) is failure
        assert raised.value.reason == reason and says in str(raised.value)
        relay.codes = {}
        await transport.send(EMAIL, SENDER, RECIPIENT)  # a failed session is not reused
    assert relay.sessions == 2
    assert len(relay.messages) == 1


async def test_a_pipelined_reply_that_never_comes_is_a_timeout_and_the_session_is_dropped() -> None:
    relay = Relay(silent=b"DATA", hold_s=0.0)
    async with serving(relay, smtp_timeout_s=0.3) as transport:
        with pytest.raises(TransientFailure) as raised:
            await transport.send(EMAIL, SENDER, RECIPIENT)
        assert raised.value.reason == "TIMEOUT"
        assert transport._idle == []


async def test_a_control_character_in_an_address_is_refused_before_anything_is_sent() -> None:
    relay = Relay()
    async with serving(relay) as transport:
        with pytest.raises(ValueError, match="control character"):
            await transport.send(EMAIL, SENDER, "ada\x7f@example.com")
    assert [verb for verb, _ in relay.seen] == [b"EHLO"]


class _Wire:
    """What a protocol needs of a transport, for feeding it replies by hand."""

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        pass


def _connected(protocol_type: type[SMTPProtocol]) -> SMTPProtocol:
    protocol = protocol_type(loop=asyncio.get_running_loop())
    protocol.connection_made(_Wire())  # type: ignore[arg-type]
    protocol._response_pending = False  # the greeting taken
    return protocol


async def _group_replies_fed_before_the_first_is_taken(protocol: SMTPProtocol) -> list[str]:
    first = asyncio.ensure_future(smtp._reply(protocol, 0.2))
    await asyncio.sleep(0)  # it waits for the first reply
    protocol.data_received(b"250 mail\r\n")
    protocol.data_received(b"250 rcpt\r\n")  # before `first` has taken its reply
    protocol.data_received(b"354 data\r\n")
    got = [(await first).message]
    for _ in range(2):
        got.append((await smtp._reply(protocol, 0.2)).message)
    return got


async def test_a_reply_that_comes_before_the_last_was_taken_is_kept_in_order() -> None:
    protocol = _connected(smtp._PipeliningProtocol)
    protocol.outstanding = 3  # type: ignore[attr-defined]
    assert await _group_replies_fed_before_the_first_is_taken(protocol) == ["mail", "rcpt", "data"]


async def test_aiosmtplibs_own_protocol_drops_it_which_is_why_the_session_keeps_more() -> None:
    """If this fails, aiosmtplib keeps such replies now and `_PipeliningProtocol` can go."""
    with pytest.raises(SMTPReadTimeoutError):
        await _group_replies_fed_before_the_first_is_taken(_connected(SMTPProtocol))


@given(st.lists(st.sampled_from([b"a", b"\xc3\xa9", b".", b"\r", b"\n", b"\r\n", b"\r\n."])))
def test_the_message_is_sent_as_aiosmtplib_s_data_frames_it(parts: list[bytes]) -> None:
    """Whatever the line endings and dots: CRLF lines, every leading dot doubled, the final
    dot, byte for byte as aiosmtplib's DATA writes it (it skips only rewrites that change
    nothing)."""
    email = b"".join(parts)
    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(email)) + b".\r\n"
    assert smtp._data(email) == expected
