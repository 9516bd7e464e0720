"""``vigie tokens``: the services' bearer tokens for operators and curl (``mint``), and a new
signing key (``rotate``). Keys: ``<data dir>/secrets/jwt/`` or ``VIGIE_JWT_DIR``; see
``pipelines.services.auth``."""
from __future__ import annotations

import click

from pipelines.services import auth


@click.group()
def tokens() -> None:
    """Mint service tokens and rotate their signing key."""


@tokens.command()
@click.option("--client", required=True, help="The calling client's name (the token's sub).")
@click.option("--user", default=None, help="The raw account id an end user's app acts for.")
@click.option("--internal", is_flag=True, help="An internal service's token (chargebacks, "
              "takeover reports, identity events) instead of a user's.")
@click.option("--ttl", type=click.IntRange(min=1), default=3600, show_default=True,
              help="Lifetime in seconds.")
def mint(client: str, user: str | None, internal: bool, ttl: int) -> None:
    """Print a token, e.g. curl -H "Authorization: Bearer $(vigie tokens mint --client me
    --user alice)" http://127.0.0.1:8081/v1/notifications/alice"""
    if internal == (user is not None):
        raise click.UsageError("give either --user U or --internal")
    scope = "internal" if internal else "user"
    click.echo(auth.Issuer().mint(client, user=user, scope=scope, ttl_s=ttl))


@tokens.command()
def rotate() -> None:
    """Make a new signing key: it signs from now on; the services verify it within seconds,
    and older tokens until their key's .pub file is removed."""
    click.echo(f"new signing key {auth.rotate()} in {auth.keys_dir()}")
