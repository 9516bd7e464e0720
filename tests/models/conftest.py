"""Fixtures of the model tests: a simulated week of messenger life as a lake."""
from __future__ import annotations

import pytest

from pipelines.simulator.offline import run_offline


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A simulated week (1,500 users), simulated again for each test module that asks."""
    out = tmp_path_factory.mktemp("lifecycle") / "lake"
    run_offline(out, seed=3, users=1500, days=7)
    return out
