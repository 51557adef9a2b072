"""Keys the adapter stores things under: a referral, and what a referral can wait for.

A referral is (program, prospect). A wait key names an arrival that may change a waiting
referral: a share with a referral code or a prospect email hash in a program, or an advocate's
profile (advocate ids are unique across programs). Keys are compact JSON so that any character
an id may hold is unambiguous.
"""

from __future__ import annotations

import functools
import json

from services.attribution.domain.state import Waits

WaitKey = tuple[str, ...]  # ("c", program, code) | ("e", program, email) | ("a", advocate)


def referral_key(program_id: str, prospect_id: str) -> bytes:
    return _json([program_id, prospect_id])


def code_wait(program_id: str, code: str) -> WaitKey:
    return ("c", program_id, code)


def email_wait(program_id: str, email_sha256: str) -> WaitKey:
    return ("e", program_id, email_sha256)


def advocate_wait(advocate_id: str) -> WaitKey:
    return ("a", advocate_id)


def wait_keys(program_id: str, waits: Waits) -> set[WaitKey]:
    """The wait keys of one referral of `program_id` (codes and emails count in its program)."""
    keys = {code_wait(program_id, code) for code in waits.codes}
    keys |= {email_wait(program_id, email) for email in waits.emails}
    keys |= {advocate_wait(advocate_id) for advocate_id in waits.advocates}
    return keys


@functools.lru_cache(maxsize=16384)
def encode_wait(key: WaitKey) -> bytes:
    """The wait key's bytes in the task store (cached: a wakeup looks each one up per task)."""
    return _json(list(key))


def decode_wait(raw: bytes) -> WaitKey:
    return tuple(json.loads(raw))


def _json(body: list[str]) -> bytes:
    """Compact JSON of a list of strings. Strings JSON writes as they are (printable ASCII
    without quotes or backslashes: the ids seen in practice) are joined directly, the same
    bytes `json.dumps` writes at a fraction of its cost; anything else goes through it."""
    if body and all(_plain(part) for part in body):
        return ('["' + '","'.join(body) + '"]').encode()
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _plain(text: str) -> bool:
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text
