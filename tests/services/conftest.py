"""Fixtures of the service tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def own_broker():
    """A broker of the test module's own, for tests that change a topic's settings or stop the
    broker: the session's broker must not see that."""
    from pipelines.bench.harness import fresh_environment

    with fresh_environment() as (broker, _):
        yield broker
