"""The offline replay: routing, order, completeness of the vector, and sharding."""
from __future__ import annotations

import math

import pytest

from features.replay import replay, shard_of
from features.routing import STATE_CLASSES, order_key, routes
from features.vector import FEATURE_NAMES, TRANSFER_NAMES, combine
from features.windows import DAY, HOUR
from pipelines.contracts import schemas as s
from pipelines.simulator.events import T0, Log, hashed, synthetic_log


@pytest.fixture(scope="module")
def fortnight() -> Log:
    return synthetic_log(n_accounts=120, days=14, seed=11)  # with a mule ring and its labels


def test_routes_of_every_event_kind():
    log = Log()
    a, b = hashed("account", "ann"), hashed("account", "bob")
    assert routes(log.message("ann", "bob", T0)) == [("account", a, "msg_out"),
                                                     ("account", b, "msg_in")]
    ev = log.account_event("ann", T0, "login", device="ph", ip="ip1")
    assert routes(ev) == [("account", a, "security"), ("device", ev.device, "seen"),
                          ("ip", ev.ip, "seen")]
    tr = log.transfer("ann", "bob", T0, device="ph", card="cc", ip="ip1")
    assert routes(tr) == [("account", a, "sender"), ("account", b, "recipient"),
                          ("device", tr.device, "transfer"), ("card", tr.card, "transfer"),
                          ("ip", tr.ip, "transfer")]
    assert routes(log.transfer("ann", "bob", T0)) == [("account", a, "sender"),
                                                      ("account", b, "recipient")]
    suggestion = log.assistant("ann", "bob", T0, "suggested", "sg")
    assert routes(suggestion) == [("account", a, "assistant")]
    assert routes(log.label("ann", T0, T0)) == [("account", a, "label")]
    assert routes(log.label("bob", T0, T0, party="recipient", on=tr)) == [
        ("account", a, "label_sent"), ("account", b, "label_received")]
    status = s.TransferStatus(id="x", ts=T0, transfer_id="t", sender=a, recipient=b,
                              amount_cents=1, status="pending")
    assert routes(status) == []


def test_every_transfer_gets_every_feature_in_order(fortnight):
    result = list(replay(fortnight + [s.ModelUpdate(id="mu", ts=T0, action="promote",
                                                    version="v1", actor="ci")]))
    transfers = [e for e in fortnight if isinstance(e, s.TransferRequested)]
    assert len(result) == len(transfers) > 1000
    for row in result:
        assert tuple(row.features) == FEATURE_NAMES
        assert all(type(v) is float for v in row.features.values())
    assert [r.ts for r in result] == sorted(r.ts for r in result)


def test_each_state_gives_exactly_the_names_it_declares(fortnight):
    states: dict = {}
    tr = next(e for e in fortnight if isinstance(e, s.TransferRequested) and e.card)
    for _ in replay(fortnight, states=states):
        pass
    for kind, key, role in routes(tr):
        part = states[(kind, key)].features_for(tr, role)
        assert tuple(part) == STATE_CLASSES[kind].feature_names(role)
    assert set(FEATURE_NAMES) == set(TRANSFER_NAMES).union(
        *(STATE_CLASSES[k].feature_names(r) for k, r in (("account", "sender"),
          ("account", "recipient"), ("device", "transfer"), ("card", "transfer"),
          ("ip", "transfer"))))


def test_combine_fills_what_no_part_gave():
    vector = combine([{"sender_count_1h": 2.0}])
    assert tuple(vector) == FEATURE_NAMES and vector["sender_count_1h"] == 2.0
    assert math.isnan(vector["device_accounts_7d"])


def test_order_is_event_time_then_topic_then_id():
    log = Log()
    tr = log.transfer("ann", "bob", T0)
    msg = log.message("ann", "bob", T0)
    early = log.message("bob", "ann", T0 - 1)
    label = log.label("bob", T0 - DAY, known_at=T0)  # counts from known_at, not ts
    login = log.account_event("ann", T0, "login")
    assert sorted(log, key=order_key) == [early, login, msg, tr, label]


def test_a_sharded_replay_equals_the_single_one(fortnight):
    """Entities spread over 3 processes as over partitions: the same vectors, value for value."""
    single = list(replay(fortnight))
    sharded = list(replay(fortnight, workers=3))
    assert [r.transfer_id for r in sharded] == [r.transfer_id for r in single]
    for a, b in zip(single, sharded):
        assert tuple(a.features) == tuple(b.features)
        assert all(x == y or (math.isnan(x) and math.isnan(y))
                   for x, y in zip(a.features.values(), b.features.values()))
    assert any(r.features["sender_fraud_links_30d"] for r in single)  # the fan-out was exercised
    # labels naming their transfer's parties reached both ends, on different shards
    labels = [e for e in fortnight if isinstance(e, s.Label) and e.sender is not None]
    assert {shard_of(e.sender, 3) != shard_of(e.recipient, 3) for e in labels} == {True, False}
    assert any(e.party == "unknown" and not e.is_fraud for e in labels)
    for name in ("recipient_in_fraud_7d", "recipient_in_fraud_share_24h", "sender_out_fraud_30d",
                 "recipient_in_count_30d", "sender_out_mean_30d", "recipient_amount_zscore_30d"):
        assert any(not math.isnan(v) and v != 0 for v in (r.features[name] for r in single)), name
    assert any(r.features["recipient_in_hours_since_fraud"] > 0 for r in single)


def test_a_sharded_replay_stopped_early_leaves_no_process():
    import multiprocessing

    rows = replay(synthetic_log(n_accounts=60, days=7), workers=2)
    next(rows)
    rows.close()
    assert not multiprocessing.active_children()


def test_states_cannot_be_kept_by_a_sharded_replay():
    with pytest.raises(ValueError):
        list(replay([], states={}, workers=2))


def test_payout_delay_and_self_transfer():
    log = Log()
    log.transfer("ann", "ann", T0)
    f = next(replay(log)).features
    assert f["transfer_to_self"] == 1 and f["transfer_payout_delay_hours"] == 2 * HOUR / HOUR


def test_vigie_replay_sharded_over_processes_writes_the_same_table(tmp_path):
    """`vigie replay --workers 2` (its default on this machine) and one process: one table."""
    import pandas as pd
    from click.testing import CliRunner

    from pipelines.cli import main
    from pipelines.simulator.offline import run_offline

    run_offline(tmp_path / "lake", seed=5, users=300, days=1)
    tables = []
    for workers in (1, 2):
        out = tmp_path / f"features-{workers}.parquet"
        result = CliRunner().invoke(main, ["replay", "--lake", str(tmp_path / "lake"),
                                           "--out", str(out), "--workers", str(workers)])
        assert result.exit_code == 0, result.output
        tables.append(pd.read_parquet(out))
    assert len(tables[0]) > 50
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_states_packed_into_bytes_give_the_same_rows(fortnight, monkeypatch):
    """The replay's default store packs the states it has not used for a while into the stream's
    bytes; with room for only a few live states, most reads unpack one: the same vectors as a
    replay keeping every state as an object."""
    import features.packed_states as packed_states
    import features.replay as replay_module

    stores = []

    class Counted(packed_states.PackedStates):
        unpacked = 0

        def get(self, key):
            self.unpacked += key in self.packed
            return super().get(key)

    monkeypatch.setattr(replay_module, "PackedStates",
                        lambda: stores.append(Counted(generation=3)) or stores[-1])
    packed = list(replay(fortnight))
    kept = list(replay(fortnight, states={}))
    assert len(packed) == len(kept) > 1000
    for a, b in zip(kept, packed):
        assert a.transfer_id == b.transfer_id
        assert all(x == y or (math.isnan(x) and math.isnan(y))
                   for x, y in zip(a.features.values(), b.features.values()))
    store, = stores
    assert len(store) - store.packed_count() <= 7 and store.unpacked > len(kept)  # 2 x 3 + 1 live
