"""Who may call what: the tokens file, the roles, and the caller of the current call.

The tokens file (API_TOKENS_FILE) holds one token per line, `<role> <sha256 hex of the token>
[name]`; `#` starts a comment. Only hashes are stored, so the file is no secret to whoever
reads it. The name, when given, is who the audit log records for that token's commands.

Each method needs one role (`METHOD_ROLES`, the contract's table); health and reflection need
none. A missing or unknown token is UNAUTHENTICATED, a known token without the method's role
PERMISSION_DENIED. Tokens never reach logs: nothing here logs, and errors name roles, never
tokens.
"""

from __future__ import annotations

import hashlib
import secrets
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from referrals.platform.errors import ConfigError

PACKAGE = "referrals.v1"


class Role(StrEnum):
    INGEST = "ingest"
    PORTAL = "portal"
    OPERATOR = "operator"
    FINANCE = "finance"


def _methods(service: str, role: Role, *names: str) -> dict[str, Role]:
    return {f"/{PACKAGE}.{service}/{name}": role for name in names}


# Full method name -> the role it needs (the contract's "The gRPC API").
METHOD_ROLES: dict[str, Role] = {
    **_methods(
        "Ingest",
        Role.INGEST,
        "PublishAdvocates",
        "PublishShares",
        "PublishConversions",
        "PublishDeals",
    ),
    **_methods("Ingest", Role.FINANCE, "PublishPayoutResults"),
    **_methods("Advocates", Role.PORTAL, "GetAdvocate", "ListReferrals", "WatchReferrals"),
    **_methods("Advocates", Role.OPERATOR, "EraseAdvocate"),
    **_methods(
        "Programs", Role.OPERATOR, "ValidateProgram", "PutProgram", "GetProgram", "ListPrograms"
    ),
    **_methods("Payouts", Role.OPERATOR, "ApproveReward", "DenyReward", "RetryPayout"),
    **_methods("Payouts", Role.FINANCE, "Reconcile"),
}
# Open to anyone: the standard health and reflection services.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of the current call: the token's role, its name in the tokens
    file (if it has one) and `token_id`, the start of the token's SHA-256 as the file lists it
    (no secret: the file holds only hashes), which tells tokens without a name apart."""

    role: Role
    name: str | None = None
    token_id: str = ""

    @property
    def token(self) -> str:
        """The token as an audit log names it: `unnamed operator token sha256:0123456789ab`."""
        return f"unnamed {self.role.value} token sha256:{self.token_id}"

    def identity(self, claimed: str = "") -> str:
        """Who the audit log records as having acted: the token's name where the tokens file
        gives one, whatever the request says; else what the request claims, with the token it
        came with, so the claim is never all there is ("" when there is neither)."""
        if self.name:
            return self.name
        claimed = " ".join(claimed.split())
        return f"{claimed} ({self.token})" if claimed else ""


_CALLER: ContextVar[Caller | None] = ContextVar("referrals_api_caller", default=None)


def current_caller() -> Caller:
    """The caller of the call being handled (set by the interceptor before the handler runs)."""
    caller = _CALLER.get()
    if caller is None:
        raise RuntimeError("no authenticated caller: the handler ran outside the interceptor")
    return caller


def set_caller(caller: Caller) -> None:
    _CALLER.set(caller)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


TOKEN_ID_CHARS = 12  # of the SHA-256 hex: enough to find the token's line in the file


@dataclass(frozen=True, slots=True)
class Tokens:
    """sha256 hex of each token -> its roles and name."""

    entries: dict[str, tuple[frozenset[Role], str | None]]

    def find(self, token: str) -> tuple[frozenset[Role], str | None] | None:
        return self.entries.get(digest(token))


def parse_tokens(text: str, source: str = "<tokens>") -> Tokens:
    """The tokens of a tokens file; a bad line is a ConfigError naming the line (not its text:
    a token pasted by mistake in place of its hash must not reach the logs)."""
    entries: dict[str, tuple[frozenset[Role], str | None]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split(None, 2)
        if not words:
            continue
        where = f"{source} line {number}"
        if len(words) < 2:
            raise ConfigError(f"{where}: expected `<role> <sha256 hex of the token> [name]`")
        role_text, hashed = words[0], words[1].lower()
        try:
            role = Role(role_text)
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise ConfigError(f"{where}: unknown role {role_text!r} (known: {known})") from None
        if len(hashed) != 64 or any(c not in "0123456789abcdef" for c in hashed):
            raise ConfigError(f"{where}: the second word must be the token's SHA-256 in hex")
        name = words[2].strip() if len(words) > 2 else None
        roles, known_name = entries.get(hashed, (frozenset(), None))
        entries[hashed] = (roles | {role}, known_name or name)
    if not entries:
        raise ConfigError(f"{source}: no tokens; add one with `referrals api token --role ROLE`")
    return Tokens(entries)


def load_tokens(path: Path | None) -> Tokens:
    """The tokens file, or a ConfigError: without one the API refuses to start."""
    if path is None:
        raise ConfigError(
            "API_TOKENS_FILE is not set: the API refuses to start without a tokens file "
            "(create one with `referrals api token --role ROLE >> tokens.txt`)"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"API_TOKENS_FILE={str(path)!r}: cannot read it ({err})") from err
    return parse_tokens(text, str(path))


def new_token(role: Role, name: str | None = None) -> tuple[str, str]:
    """A fresh random token and the tokens-file line that admits it."""
    token = secrets.token_urlsafe(32)
    line = f"{role.value} {digest(token)}" + (f" {name}" if name else "")
    return token, line


def bearer(metadata: object) -> str | None:
    """The token of an `authorization: Bearer <token>` header, if the call has one."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None
