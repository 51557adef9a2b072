"""The pipeline bench's SMTP relay: a minimal SMTP server on an asyncio protocol, in its own
process.

Run in the bench's process (as a thread of it, like `make demo`'s catcher), the relay competed
for the GIL with the bench's producer and its follower decoding every record: each SMTP command
waited up to a switch interval, so the relay, not the notifications service, set the pace of
mail (measured: WON → SMTP p50 8.7 s at 500 input events/s with the relay a thread, the
notifications service at 22 % of a core). A production relay is a process of its own; so is
this one.

It was aiosmtpd, whose per-command machinery (a stream reader, a coroutine and a log line per
command, the envelope's content decoded) cost 0.3 ms a message: 20-70 % of a core while the
year's 9,500 messages drained, taken from the two cores the services it measures share (a
production relay runs on a machine of its own). This one answers the commands a sender needs,
in the order RFC 5321 requires (503 out of order), and keeps nothing but each message's stamp.
It announces PIPELINING (RFC 2920), as production relays do: the replies to the commands that
came in one read go out in one write.

Each accepted message is written to stdout as one line, `<CLOCK_MONOTONIC seconds> <notification
id> <kind>`, taken when its final dot arrives: `time.monotonic()` is the system-wide monotonic
clock on Linux, so the bench compares it with its own stamps directly. Lines are flushed once
per turn of the event loop, not once each.

    python bench/mailsink.py PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from typing import IO

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^@>]+)@", re.IGNORECASE | re.MULTILINE)
_KIND = re.compile(rb"^X-Referrals-Kind:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
HOSTNAME = "bench-relay"
MAX_LINE = 4096  # a command line longer than this is refused (RFC 5321 asks 512 at least)
MAX_MESSAGE = 33_554_432
EHLO = (
    f"250-{HOSTNAME}\r\n250-SIZE {MAX_MESSAGE}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
    "250-PIPELINING\r\n250 HELP\r\n"
).encode()
END_OF_DATA = b"\r\n.\r\n"


def stamp(content: bytes, at: float) -> str:
    """The line written for an accepted message: its time, notification id and kind ("-" when
    a header is missing)."""
    head = content.split(b"\r\n\r\n", 1)[0]
    mid, kind = _MESSAGE_ID.search(head), _KIND.search(head)
    notification_id = mid.group(1).decode() if mid else "-"
    return f"{at:.6f} {notification_id} {kind.group(1).decode() if kind else '-'}"


class Stamps:
    """Accepted messages' lines, written to `out` and flushed once per event-loop turn."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._pending: list[str] = []

    def add(self, line: str) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(line)

    def flush(self) -> None:
        lines, self._pending = self._pending, []
        self.out.write("".join(f"{line}\n" for line in lines))
        self.out.flush()


class Session(asyncio.Protocol):
    """One SMTP session: commands line by line; after DATA, the message up to its final dot."""

    def __init__(self, stamps: Stamps) -> None:
        self.stamps = stamps
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.greeted = False
        self.sender = False  # MAIL given
        self.recipients = 0
        self.in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(f"220 {HOSTNAME} ESMTP\r\n".encode())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies: list[bytes] = []
        while self.transport is not None:
            if self.in_data:
                # The message opens right after DATA's line: its end is "." on a line of its
                # own, a CRLF before it (or the message is empty and the dot comes first).
                if self.buffer.startswith(b".\r\n"):
                    content, rest = b"", 3
                else:
                    end = self.buffer.find(END_OF_DATA)
                    if end < 0:
                        if len(self.buffer) > MAX_MESSAGE:
                            replies.append(b"552 Error: Too much mail data\r\n")
                            self._close(replies)
                        break
                    content, rest = bytes(self.buffer[:end]), end + len(END_OF_DATA)
                del self.buffer[:rest]
                self.stamps.add(stamp(content, time.monotonic()))
                self.in_data, self.sender, self.recipients = False, False, 0
                replies.append(b"250 OK\r\n")
                continue
            eol = self.buffer.find(b"\r\n")
            if eol < 0:
                if len(self.buffer) > MAX_LINE:
                    replies.append(b"500 Error: line too long\r\n")
                    self._close(replies)
                break
            line = bytes(self.buffer[:eol])
            del self.buffer[: eol + 2]
            reply = self.command(line)
            replies.append(reply)
            if reply.startswith(b"221"):
                self._close(replies)
        if replies and self.transport is not None:
            self.transport.write(b"".join(replies))

    def command(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb == b"EHLO":
            self.greeted, self.sender, self.recipients = True, False, 0
            return EHLO
        if verb == b"HELO":
            self.greeted, self.sender, self.recipients = True, False, 0
            return f"250 {HOSTNAME}\r\n".encode()
        if verb == b"MAIL":
            if not self.greeted:
                return b"503 Error: send HELO first\r\n"
            if self.sender:
                return b"503 Error: nested MAIL command\r\n"
            if not line[4:].upper().startswith(b" FROM:"):
                return b"501 Syntax: MAIL FROM: <address>\r\n"
            self.sender = True
            return b"250 OK\r\n"
        if verb == b"RCPT":
            if not self.sender:
                return b"503 Error: need MAIL command\r\n"
            if not line[4:].upper().startswith(b" TO:"):
                return b"501 Syntax: RCPT TO: <address>\r\n"
            self.recipients += 1
            return b"250 OK\r\n"
        if verb == b"DATA":
            if not self.recipients:
                return b"503 Error: need RCPT command\r\n"
            self.in_data = True
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"RSET":
            self.sender, self.recipients = False, 0
            return b"250 OK\r\n"
        if verb == b"NOOP":
            return b"250 OK\r\n"
        if verb == b"QUIT":
            return b"221 Bye\r\n"
        return b"502 Error: command not implemented\r\n"

    def _close(self, replies: list[bytes]) -> None:
        if self.transport is not None:
            self.transport.write(b"".join(replies))
            replies.clear()
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int) -> None:
    stamps = Stamps(sys.stdout)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Session(stamps), host="127.0.0.1", port=port)
    print(f"ready {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(int(sys.argv[1])))
