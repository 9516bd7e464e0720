"""``vigie import``: a provider's history (transfers, delayed labels, sign-ups) as a lake.

The history is generated here (a few thousand transfers, raw account ids that no hash can
contain, mules, labels known a week later), with bad rows at known lines."""
from __future__ import annotations

import csv
import datetime as dt
import json
import os
import random
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.contracts.privacy import pseudonymize
from pipelines.lake.event_log import read_log, read_topic
from pipelines.lake.sources import lake_families, signup_source

ROOT = Path(__file__).resolve().parents[2]
START = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)
DAY_MS = 86_400_000
HEADER = ["transfer_id", "ts", "sender", "recipient", "amount", "currency"]
GOOD = {"ts": "2026-01-10T10:00:00Z", "sender": "zq-acct-00001", "recipient": "zq-acct-00002",
        "amount": "5.00", "currency": "EUR"}


def bad(transfer_id: str, reason: str, **fields) -> tuple[list[str], str]:
    """A good row with ``fields`` changed, and the reason it must be rejected with."""
    row = {**GOOD, "transfer_id": transfer_id, **fields}
    return [row[c] for c in HEADER], reason


# (row, expected reason): bad rows put among the good ones
BAD = [
    bad("bad-1", "amount: zero or negative", amount="0.00"),
    bad("bad-2", "amount: zero or negative", amount="-5.00"),
    bad("bad-3", "amount: more than 2 decimals", amount="1.005"),
    bad("bad-4", "amount: not a decimal number", amount="12,50"),
    bad("bad-5", "currency: not an ISO 4217 currency code", currency="EUROS"),
    bad("bad-6", "currency: not an ISO 4217 currency code", currency="QQQ"),
    bad("bad-7", "ts: not ISO 8601 or epoch milliseconds", ts="last tuesday"),
    bad("bad-8", "ts: out of range (2001-2286; epoch seconds instead of milliseconds?)",
        ts="1768039200"),
    bad("bad-9", "sender: missing", sender=""),
    bad("bad-10", "amount: missing", amount=""),
    bad("bad 11", "transfer_id: not 1-62 characters of A-Z a-z 0-9 _ . : -"),
    bad("", "transfer_id: missing"),
    (["bad-13", "2026-01-10T10:00:00Z", "zq-acct-00001"], "row: 3 columns, expected 6"),
    bad("T000001", "transfer_id: repeated (an earlier line has it)"),
]


def raw_account(i: int) -> str:
    return f"zq-acct-{i:05d}"


def history(n: int = 3000, accounts: int = 300, mules: int = 8, days: int = 60, seed: int = 3):
    """(transfers, labels): rows as the provider would export them. Mules receive large
    amounts from many senders; their transfers get a label a week later."""
    rnd = random.Random(seed)
    transfers, labels = [], []
    for k in range(n):
        ts = START + dt.timedelta(milliseconds=int(k / n * days * DAY_MS) + rnd.randint(0, 60_000))
        sender = rnd.randrange(mules, accounts)
        fraud = rnd.random() < 0.06
        recipient = rnd.randrange(mules) if fraud else rnd.randrange(mules, accounts)
        cents = rnd.randint(30_000, 95_000) if fraud else rnd.randint(100, 12_000)
        amount = f"{Decimal(cents) / 100:.2f}".rstrip("0").rstrip(".") if k % 7 == 0 \
            else f"{Decimal(cents) / 100:.2f}"
        when = str(int(ts.timestamp() * 1000)) if k % 2 else ts.isoformat().replace("+00:00", "Z")
        tid = f"T{k:06d}"
        transfers.append({"transfer_id": tid, "ts": when, "sender": raw_account(sender),
                          "recipient": raw_account(recipient), "amount": amount,
                          "currency": "" if k % 5 == 0 else "EUR",
                          "_ms": int(ts.timestamp() * 1000), "_cents": cents})
        known = ts + dt.timedelta(days=7, hours=rnd.randint(0, 48))
        if fraud:
            labels.append({"transfer_id": tid, "kind": rnd.choice(["chargeback", "scam report"]),
                           "known_at": known.isoformat(), "party": "recipient"})
        elif rnd.random() < 0.02:
            labels.append({"transfer_id": tid, "kind": "legit", "known_at": known.isoformat(),
                           "party": ""})
    return transfers, labels


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(header)
        out.writerows(rows)


def with_bad_rows(transfers: list[dict], every: int = 211) -> tuple[list[list[str]], dict]:
    """The transfer rows with BAD spread among them; {line: reason} of the bad ones."""
    rows, expected, bad = [], {}, iter(BAD)
    for k, t in enumerate(transfers):
        if k % every == 5:
            row, reason = next(bad, (None, None))
            if row is not None:
                rows.append(row)
                expected[len(rows) + 1] = reason  # the header is line 1
        rows.append([t[c] for c in HEADER])
    return rows, expected


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(main, ["import", "--no-progress", *args])
    assert result.exit_code == code, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def generated():
    return history()


@pytest.fixture(scope="module")
def imported(tmp_path_factory, generated):
    """The generated history, with bad rows, imported from CSV (transfers and labels)."""
    transfers, labels = generated
    folder = tmp_path_factory.mktemp("csv")
    rows, expected = with_bad_rows(transfers)
    write_csv(folder / "transfers.csv", HEADER, rows)
    labels_rows = [[l["transfer_id"], l["kind"], l["known_at"], l["party"]] for l in labels]
    labels_rows.append(["T999999", "chargeback", "2026-03-01T00:00:00Z", "sender"])  # unknown
    labels_rows.append(["T000001", "refund", "2026-03-01T00:00:00Z", "sender"])  # unknown kind
    write_csv(folder / "labels.csv", ["transfer_id", "kind", "known_at", "party"], labels_rows)
    out = folder / "lake"
    result = run("--transfers", str(folder / "transfers.csv"), "--labels",
                 str(folder / "labels.csv"), "--out", str(out))
    return out, expected, result.output, len(labels_rows)


def rejects(out: Path) -> list[dict]:
    with open(out / "rejects.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_csv_rejects_have_line_and_reason_and_every_good_row_is_in_the_lake(imported, generated):
    out, expected, output, _ = imported
    transfers, _ = generated
    assert len(expected) == len(BAD)
    got = {int(r["line"]): r["reason"] for r in rejects(out) if r["file"] == "transfers.csv"}
    assert got == expected
    lake = read_topic(out, "transfer-requests")
    assert len(lake) == len(transfers)
    assert sorted(e.transfer_id for e in lake) == [t["transfer_id"] for t in transfers]
    by_id = {e.transfer_id: e for e in lake}
    for t in transfers:
        event = by_id[t["transfer_id"]]
        assert (event.ts, event.amount_cents, event.currency) == (t["_ms"], t["_cents"], "EUR")
        assert event.id == f"{t['transfer_id']}.r"
        assert event.payout_due_ts == event.ts + 30_000
    assert f"read {len(transfers) + len(BAD):,}, imported {len(transfers):,}, " \
           f"rejected {len(BAD)}" in output
    assert "amount: zero or negative" in output


def test_ids_are_hashed_like_the_services_and_no_raw_id_reaches_the_out_dir(imported, generated):
    out, *_ = imported
    transfers, _ = generated
    by_id = {e.transfer_id: e for e in read_topic(out, "transfer-requests")}
    for t in transfers[:500]:
        event = by_id[t["transfer_id"]]
        assert event.sender == pseudonymize("account", t["sender"])
        assert event.recipient == pseudonymize("account", t["recipient"])
    raw = {raw_account(i) for i in range(400)}
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and (out / "rejects.csv") in files
    for path in files:
        if path.suffix == ".parquet":  # compressed: look at the values, not the bytes
            values = [str(v) for column in pq.read_table(path).columns
                      for v in column.to_pylist()]
            assert not any("zq-acct" in v for v in values), path
        else:
            assert b"zq-acct" not in path.read_bytes(), path
    assert raw  # the scan looked for the raw ids' common prefix


def test_labels_join_their_transfers_with_parties(imported, generated):
    out, _, _, label_rows = imported
    transfers, labels = generated
    by_id = {t["transfer_id"]: t for t in transfers}
    lake = read_topic(out, "labels")
    assert len(lake) == len(labels) == label_rows - 2
    for label in lake:
        t = by_id[label.transfer_id]
        assert label.ts == t["_ms"]
        assert label.sender == pseudonymize("account", t["sender"])
        assert label.recipient == pseudonymize("account", t["recipient"])
        assert label.party in ("recipient", "unknown")
        assert label.account == (label.recipient if label.party == "recipient" else label.sender)
        assert label.known_at >= label.ts + 7 * DAY_MS
        if label.party == "unknown":
            assert (label.kind, label.is_fraud) == ("analyst_verdict", False)
        else:
            assert label.kind in ("chargeback", "user_scam_report") and label.is_fraud
    got = {(r["line"], r["reason"]) for r in rejects(out) if r["file"] == "labels.csv"}
    last = label_rows + 1  # the header is line 1
    assert got == {(str(last), "kind: unknown label kind"),
                   (str(last - 1), "transfer_id: no such transfer imported")}


def test_first_appearance_signups_and_the_manifest(imported, generated):
    out, *_ = imported
    transfers, _ = generated
    first: dict[str, int] = {}
    for t in transfers:
        for raw in (t["sender"], t["recipient"]):
            first[raw] = min(first.get(raw, t["_ms"]), t["_ms"])
    signups = {e.account: e.ts for e in read_topic(out, "account-events")}
    assert signups == {pseudonymize("account", raw): ts for raw, ts in first.items()}
    manifest = json.loads((out / "sources.json").read_text())
    assert manifest["families"] == {"transfers": True, "labels": True,
                                    "accounts": "first_appearance", "devices": False,
                                    "messages": False, "assistant": False}
    assert manifest["files"]["transfers"]["imported"] == len(transfers)
    assert lake_families(out) == {"transfers": True, "labels": True, "accounts": True,
                                  "devices": False, "messages": False, "assistant": False}
    assert signup_source(out) == "first_appearance"


def test_the_lake_reads_back_through_the_event_log(imported, generated):
    out, *_ = imported
    transfers, labels = generated
    accounts = {t[c] for t in transfers for c in ("sender", "recipient")}
    log = read_log(out)
    assert len(log) == len(transfers) + len(labels) + len(accounts)
    # a label counts from when it was known: never before its transfer
    position = {getattr(e, "id"): i for i, e in enumerate(log)}
    for label in (e for e in log if type(e).__name__ == "Label"):
        assert position[label.id] > position[f"{label.transfer_id}.r"]


def test_parquet_import_matches_the_csv_import(tmp_path, imported, generated):
    transfers, labels = generated
    table = pa.table({
        "transfer_id": [t["transfer_id"] for t in transfers],
        "ts": pa.array([t["_ms"] for t in transfers], pa.timestamp("ms", tz="UTC")),
        "sender": [t["sender"] for t in transfers],
        "recipient": [t["recipient"] for t in transfers],
        "amount": pa.array([Decimal(t["_cents"]) / 100 for t in transfers], pa.decimal128(12, 2)),
    })
    pq.write_table(table, tmp_path / "transfers.parquet")
    pq.write_table(pa.Table.from_pylist(labels), tmp_path / "labels.parquet")
    run("--transfers", str(tmp_path / "transfers.parquet"), "--labels",
        str(tmp_path / "labels.parquet"), "--out", str(tmp_path / "lake"))
    csv_lake, *_ = imported

    def content(lake: Path, topic: str) -> list:
        return sorted(msgspec_tuple(e) for e in read_topic(lake, topic))

    for topic in ("transfer-requests", "labels", "account-events"):
        assert content(tmp_path / "lake", topic) == content(csv_lake, topic), topic
    assert rejects(tmp_path / "lake") == []


def msgspec_tuple(event) -> tuple:
    import msgspec

    return tuple(sorted(msgspec.structs.asdict(event).items(), key=lambda kv: kv[0]))


def test_a_parquet_null_is_a_reject_with_its_row_number(tmp_path):
    table = pa.table({"transfer_id": ["a1", "a2", "a3"], "ts": [1_768_000_000_000] * 3,
                      "sender": ["zq-acct-00001", None, "zq-acct-00003"],
                      "recipient": ["zq-acct-00002"] * 3, "amount": [10.5, 3.0, 0.1 + 0.2]})
    pq.write_table(table, tmp_path / "t.parquet")
    run("--transfers", str(tmp_path / "t.parquet"), "--out", str(tmp_path / "lake"))
    assert [(r["line"], r["reason"]) for r in rejects(tmp_path / "lake")] == [
        ("2", "sender: missing"), ("3", "amount: more than 2 decimals")]
    [event] = read_topic(tmp_path / "lake", "transfer-requests")
    assert event.amount_cents == 1050


def test_iso_and_epoch_ms_times(tmp_path):
    rows = [["t1", "2026-02-01T12:00:00Z"], ["t2", "2026-02-01T13:00:00+01:00"],
            ["t3", "2026-02-01 12:00:00"], ["t4", "1769947200000"],
            ["t5", "2026-02-01T12:00:00.250Z"], ["t6", "2026-02-01"]]
    write_csv(tmp_path / "t.csv", ["transfer_id", "ts", "sender", "recipient", "amount"],
              [r + ["zq-acct-00001", "zq-acct-00002", "1"] for r in rows])
    run("--transfers", str(tmp_path / "t.csv"), "--out", str(tmp_path / "lake"))
    noon = 1_769_947_200_000  # 2026-02-01T12:00:00Z
    got = {e.transfer_id: e.ts for e in read_topic(tmp_path / "lake", "transfer-requests")}
    assert got == {"t1": noon, "t2": noon, "t3": noon, "t4": noon, "t5": noon + 250,
                   "t6": noon - 12 * 3_600_000}


def test_map_renames_source_columns(tmp_path):
    write_csv(tmp_path / "t.csv", ["ref", "tx_time", "from", "to", "value"],
              [["m1", "2026-02-01T12:00:00Z", "zq-acct-00001", "zq-acct-00002", "7.10"]])
    write_csv(tmp_path / "l.csv", ["ref", "type", "learnt"],
              [["m1", "Chargeback", "2026-02-09T12:00:00Z"]])
    result = CliRunner().invoke(main, ["import", "--no-progress", "--transfers",
                                       str(tmp_path / "t.csv"), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "no column transfer_id, ts, sender, recipient, amount" \
        in result.output
    run("--transfers", str(tmp_path / "t.csv"), "--labels", str(tmp_path / "l.csv"),
        "--out", str(tmp_path / "lake"), "--map", "ref=transfer_id", "--map", "tx_time=ts",
        "--map", "from=sender", "--map", "to=recipient", "--map", "value=amount",
        "--map", "type=kind", "--map", "learnt=known_at")
    [transfer] = read_topic(tmp_path / "lake", "transfer-requests")
    assert (transfer.transfer_id, transfer.amount_cents) == ("m1", 710)
    assert transfer.sender == pseudonymize("account", "zq-acct-00001")
    [label] = read_topic(tmp_path / "lake", "labels")
    assert (label.kind, label.party, label.account) == ("chargeback", "unknown", transfer.sender)


def test_declared_signups_from_an_accounts_file(tmp_path):
    write_csv(tmp_path / "t.csv", ["transfer_id", "ts", "sender", "recipient", "amount"],
              [["d1", "2026-02-01T12:00:00Z", "zq-acct-00001", "zq-acct-00002", "1"]])
    write_csv(tmp_path / "a.csv", ["account", "signup_ts"],
              [["zq-acct-00001", "2025-01-01T00:00:00Z"], ["zq-acct-00002", "soon"]])
    result = run("--transfers", str(tmp_path / "t.csv"), "--accounts", str(tmp_path / "a.csv"),
                 "--out", str(tmp_path / "lake"))
    [signup] = read_topic(tmp_path / "lake", "account-events")
    assert (signup.account, signup.kind) == (pseudonymize("account", "zq-acct-00001"), "signup")
    assert rejects(tmp_path / "lake") == [
        {"file": "a.csv", "line": "3", "reason": "signup_ts: not ISO 8601 or epoch milliseconds"}]
    assert lake_families(tmp_path / "lake")["accounts"] is True
    assert signup_source(tmp_path / "lake") == "declared"
    assert "accounts (a.csv): read 2, imported 1, rejected 1" in result.output


def test_exit_code_is_non_zero_only_when_nothing_imported(tmp_path):
    header = ["transfer_id", "ts", "sender", "recipient", "amount"]
    write_csv(tmp_path / "bad.csv", header, [["z1", "2026-02-01", "a", "b", "0.00"],
                                             ["z2", "2026-02-01", "a", "b", "-1"]])
    result = run("--transfers", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "none"), code=1)
    assert "imported 0, rejected 2" in result.output
    write_csv(tmp_path / "one.csv", header, [["z1", "2026-02-01", "a", "b", "0.00"],
                                             ["z2", "2026-02-01", "a", "b", "0.01"]])
    run("--transfers", str(tmp_path / "one.csv"), "--out", str(tmp_path / "one"), code=0)
    # a non-empty output directory is refused: an import never mixes with another lake
    result = run("--transfers", str(tmp_path / "one.csv"), "--out", str(tmp_path / "one"), code=1)
    assert "not empty" in result.output


def test_families_of_a_lake_without_manifest(tmp_path, imported):
    from pipelines.contracts import schemas as s
    from pipelines.lake.writer import LakeWriter

    writer = LakeWriter(tmp_path / "sim")
    account = pseudonymize("account", "zq-acct-00001")
    writer.buffers["account-events"] += [
        s.AccountEvent(id="e1", ts=1_769_947_200_000, account=account, kind="signup"),
        s.AccountEvent(id="e2", ts=1_769_947_300_000, account=account, kind="login",
                       device=pseudonymize("device", "phone"))]
    writer.close()
    assert lake_families(tmp_path / "sim") == {"transfers": False, "labels": False,
                                               "accounts": True, "devices": True,
                                               "messages": False, "assistant": False}
    assert signup_source(tmp_path / "sim") == "declared"
    assert signup_source(tmp_path / "empty") is None


def test_the_readme_example_imports(tmp_path):
    examples = ROOT / "data" / "examples"
    result = run("--transfers", str(examples / "transfers.csv"), "--labels",
                 str(examples / "labels.csv"), "--accounts", str(examples / "accounts.csv"),
                 "--out", str(tmp_path / "lake"))
    assert "rejected 7" in result.output
    assert len(read_topic(tmp_path / "lake", "labels")) == 5


def test_vigie_train_runs_on_an_imported_transfers_and_labels_history(tmp_path):
    """The stock ``vigie train`` on a history that holds transfers and labels only."""
    transfers, labels = history(n=8000, accounts=150, mules=6, days=60, seed=11)
    write_csv(tmp_path / "t.csv", HEADER, [[t[c] for c in HEADER] for t in transfers])
    write_csv(tmp_path / "l.csv", ["transfer_id", "kind", "known_at", "party"],
              [[l["transfer_id"], l["kind"], l["known_at"], l["party"]] for l in labels])
    run("--transfers", str(tmp_path / "t.csv"), "--labels", str(tmp_path / "l.csv"),
        "--out", str(tmp_path / "lake"))
    env = {**os.environ, "VIGIE_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "train", "--lake",
                           str(tmp_path / "lake"), "--no-card", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=500, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stats = json.loads(done.stdout[done.stdout.index("{"):])
    assert stats["frauds"] > 0
    meta = json.loads((tmp_path / "data" / "models" / stats["version"] / "meta.json").read_text())
    # only the features a transfers + labels history feeds: no device, message or assistant one
    from features.sources import FEATURE_FAMILY

    used = {FEATURE_FAMILY[n] for n in meta["feature_names"]}
    assert used <= {"transfers", "labels", "accounts"} and "labels" in used
