"""Option values several commands read alike: points in time (``--cutoff``, ``--from``, ``--to``)."""
from __future__ import annotations

import click

from pipelines.lake.importer import Reject, parse_ms


def parse_time(value: str | None) -> int | None:
    """A time option: ISO 8601 (no offset: UTC) or epoch ms, read as ``vigie import`` reads it."""
    if value is None:
        return None
    try:
        return parse_ms(value, "time")
    except Reject as err:
        raise click.BadParameter(str(err)) from None
