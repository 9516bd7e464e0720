"""While a partition moves between payment instances (revoked by one, being restored by the
next, announced by neither yet), no instance may answer that a transfer is unknown: a chargeback
for a transfer of that partition would get a 404 it should not. It gets 503 and a Retry-After."""
from __future__ import annotations

import pytest
from service_support import aio

from pipelines.services.errors import ApiError
from pipelines.services.payment import FORWARDED, Payment

ME, OTHER = "http://127.0.0.1:1", "http://127.0.0.1:2"


class Announced:
    """``payment-owners`` as an instance has read it: partition -> the URL that serves it."""

    def __init__(self, urls: dict[int, str]):
        self.urls = urls

    def url(self, partition: int):
        return self.urls.get(partition)


def instance(mine: set[int], announced: dict[int, str]) -> Payment:
    service = Payment(url=ME)
    service.partitions = 4
    service.writers = {p: object() for p in mine}
    service.owners = Announced(announced)
    return service


@pytest.mark.parametrize("mine, announced, moving", [
    ({0, 1, 2, 3}, {0: ME, 1: ME, 2: ME, 3: ME}, False),  # one instance, settled
    ({0, 1}, {0: ME, 1: ME, 2: OTHER, 3: OTHER}, False),  # two, settled
    ({0, 1}, {0: ME, 1: ME, 2: ME, 3: OTHER}, True),  # 2 revoked from us, its taker restoring
    ({0, 1}, {0: ME, 1: ME, 3: OTHER}, True),  # 2 never announced yet
    ({0, 1, 3}, {0: ME, 1: ME, 2: OTHER, 3: OTHER}, False),  # 3 ours now (OTHER's record is old)
])
def test_a_partition_between_owners_is_moving(mine, announced, moving):
    assert instance(mine, announced)._moving() is moving


@aio
async def test_an_unknown_transfer_is_503_while_a_partition_moves_and_404_once_settled():
    class Request:
        headers = {FORWARDED: "1"}  # asked by another instance: not passed on

    with pytest.raises(ApiError) as moving:
        await instance({0, 1}, {0: ME, 1: ME, 2: ME, 3: OTHER})._ask_the_others(Request())
    assert moving.value.status == 503 and moving.value.headers == {"Retry-After": "1"}
    with pytest.raises(ApiError) as settled:
        await instance({0, 1}, {0: ME, 1: ME, 2: OTHER, 3: OTHER})._ask_the_others(Request())
    assert settled.value.status == 404
