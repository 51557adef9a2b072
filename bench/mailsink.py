"""The pipeline bench's SMTP relay: aiosmtpd on its own event loop in its own process.

Run in the bench's process (as a thread of it, like `make demo`'s catcher), the relay competed
for the GIL with the bench's producer and its follower decoding every record: each SMTP command
waited up to a switch interval, so the relay, not the notifications service, set the pace of
mail (measured: WON → SMTP p50 8.7 s at 500 input events/s with the relay a thread, the
notifications service at 22 % of a core). A production relay is a process of its own; so is
this one.

Each accepted message is written to stdout as one line, `<CLOCK_MONOTONIC seconds> <notification
id> <kind>`: `time.monotonic()` is the system-wide monotonic clock on Linux, so the bench compares
it with its own stamps directly.

    python bench/mailsink.py PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from typing import Any

from aiosmtpd.smtp import SMTP

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^@>]+)@", re.IGNORECASE | re.MULTILINE)
_KIND = re.compile(rb"^X-Referrals-Kind:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def stamp(content: bytes, at: float) -> str:
    """The line written for an accepted message: its time, notification id and kind ("-" when
    a header is missing)."""
    head = content.split(b"\r\n\r\n", 1)[0]
    mid, kind = _MESSAGE_ID.search(head), _KIND.search(head)
    notification_id = mid.group(1).decode() if mid else "-"
    return f"{at:.6f} {notification_id} {kind.group(1).decode() if kind else '-'}"


class Handler:
    def __init__(self) -> None:
        self.out = sys.stdout

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.out.write(stamp(envelope.content or b"", time.monotonic()) + "\n")
        self.out.flush()
        return "250 OK"


async def serve(port: int) -> None:
    handler = Handler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench-relay"), host="127.0.0.1", port=port
    )
    print(f"ready {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(int(sys.argv[1])))
