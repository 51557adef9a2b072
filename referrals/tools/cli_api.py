"""`referrals api token`: admit a caller to the gRPC API (`referrals run api`).

The API keeps only tokens' SHA-256 hashes (API_TOKENS_FILE); this prints a new random token
once, for the caller, and the line that admits it, for the tokens file. The API module is
imported when the command runs, so the other commands never load it.
"""

from __future__ import annotations

import click

ROLES = ("ingest", "portal", "operator", "finance")  # services.api.auth.Role


@click.group("api", short_help="The gRPC API's tokens.")
def api_group() -> None:
    """Manage who may call the gRPC API (`referrals run api`)."""


@api_group.command("token", short_help="Print a new token and its tokens-file line.")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the token may call.")
@click.option("--name", help="Who uses it: the audit log records it as `by` (no spaces).")
def token_command(role: str, name: str | None) -> None:
    """Print a new random API token (standard error, with how to use it) and the line to add
    to the API's tokens file (standard output, so `>> tokens.txt` appends just that line).

    Give the token to the caller; it is not stored anywhere and cannot be shown again. The
    API reads the tokens file when it starts: restart it to admit the new token.
    """
    from services.api.auth import Role, new_token

    if name is not None and (not name.strip() or any(c.isspace() for c in name)):
        raise click.BadParameter("must be one word", param_hint="--name")
    token, line = new_token(Role(role), name)
    click.echo(f"token (give it to the caller; shown once): {token}", err=True)
    click.echo(f"send it as the header  authorization: Bearer {token}", err=True)
    click.echo(line)
