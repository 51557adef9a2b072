"""The pipeline bench's SMTP relay (`bench/mailsink.py`), a minimal server of its own: the
notifications service's transport hands it messages over reused sessions and each accepted one
is stamped once, with its notification id and kind; commands out of order are refused."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest

from bench.mailsink import Session, Stamps, stamp
from services.notifications.adapters import smtp
from services.notifications.adapters.config import NotificationsSettings


@pytest.fixture
async def relay() -> AsyncIterator[tuple[int, io.StringIO]]:
    out = io.StringIO()
    stamps = Stamps(out)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Session(stamps), host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, out
    finally:
        server.close()
        await server.wait_closed()


def email(n: int, kind: str = "THANK_YOU") -> bytes:
    return (
        f"Message-ID: <n-{n}@example.com>\r\nX-Referrals-Kind: {kind}\r\nSubject: m{n}\r\n\r\n"
        f"line one\r\n.a line starting with a dot\r\n\r\n"
    ).encode()


def lines(out: io.StringIO) -> list[list[str]]:
    return [line.split() for line in out.getvalue().splitlines()]


async def test_the_services_transport_sends_through_it_and_each_message_is_stamped_once(
    relay: tuple[int, io.StringIO],
) -> None:
    port, out = relay
    transport = smtp.SmtpTransport(NotificationsSettings(smtp_port=port))
    before = asyncio.get_running_loop().time()
    for n in range(5):
        await transport.send(email(n, "STATUS" if n % 2 else "THANK_YOU"), "a@x.org", "b@y.org")
    await transport.close()
    await asyncio.sleep(0)  # the stamps are flushed once per loop turn
    stamped = lines(out)
    assert [(mid, kind) for _, mid, kind in stamped] == [
        ("n-0", "THANK_YOU"),
        ("n-1", "STATUS"),
        ("n-2", "THANK_YOU"),
        ("n-3", "STATUS"),
        ("n-4", "THANK_YOU"),
    ]
    assert all(float(at) >= before for at, _, _ in stamped)  # the system-wide monotonic clock


async def test_commands_out_of_order_are_refused_and_an_empty_message_is_accepted(
    relay: tuple[int, io.StringIO],
) -> None:
    port, out = relay
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def say(line: bytes) -> bytes:
        writer.write(line + b"\r\n")
        await writer.drain()
        return await reader.readuntil(b"\r\n")

    assert (await reader.readuntil(b"\r\n")).startswith(b"220 ")
    assert (await say(b"MAIL FROM:<a@x.org>")).startswith(b"503 ")  # no HELO yet
    assert (await say(b"HELO client")).startswith(b"250 ")
    assert (await say(b"RCPT TO:<b@y.org>")).startswith(b"503 ")  # no MAIL yet
    assert (await say(b"MAIL FROM:<a@x.org>")).startswith(b"250 ")
    assert (await say(b"MAIL FROM:<a@x.org>")).startswith(b"503 ")  # nested
    assert (await say(b"DATA")).startswith(b"503 ")  # no RCPT yet
    assert (await say(b"RCPT TO:<b@y.org>")).startswith(b"250 ")
    assert (await say(b"DATA")).startswith(b"354 ")
    assert (await say(b".")).startswith(b"250 ")  # an empty message: the dot at once
    assert (await say(b"VRFY b@y.org")).startswith(b"502 ")
    assert (await say(b"QUIT")).startswith(b"221 ")
    assert await reader.read() == b""  # closed after QUIT
    writer.close()
    await asyncio.sleep(0)
    assert [(mid, kind) for _, mid, kind in lines(out)] == [("-", "-")]


async def test_a_message_split_across_reads_is_stamped_when_its_final_dot_arrives(
    relay: tuple[int, io.StringIO],
) -> None:
    port, out = relay
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readuntil(b"\r\n")
    writer.write(b"EHLO c\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n")
    await writer.drain()
    ehlo = await reader.readuntil(b"250 HELP\r\n")
    assert b"250-SIZE " in ehlo and b"250-SMTPUTF8" in ehlo and b"250-PIPELINING" in ehlo
    for _ in range(3):
        assert (await reader.readuntil(b"\r\n"))[:3] in (b"250", b"354")
    body = email(7)
    writer.write(body[:20])
    await writer.drain()
    writer.write(body[20:] + b"\r\n.")
    await writer.drain()
    await asyncio.sleep(0.05)
    assert out.getvalue() == ""  # not yet: the final dot's line has not ended
    writer.write(b"\r\n")
    await writer.drain()
    assert (await reader.readuntil(b"\r\n")).startswith(b"250 ")
    await asyncio.sleep(0)
    assert [(mid, kind) for _, mid, kind in lines(out)] == [("n-7", "THANK_YOU")]
    writer.close()


def test_stamp_reads_the_headers_only() -> None:
    content = b"Subject: s\r\n\r\nMessage-ID: <in-body@x>\r\n"
    assert stamp(content, 1.5) == "1.500000 - -"
    assert stamp(email(3, "NURTURE"), 2.0) == "2.000000 n-3 NURTURE"
