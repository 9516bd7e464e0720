"""Console sign-in and its audit: failed sign-ins lock a name out for a while (in every process,
across reloads), an unknown name is answered like a known one, a removed or re-roled user's
session ends at their next click, SQL queries have a memory limit, and sign-ins, failures,
lockouts, ended sessions and SQL queries are audited on the real broker (console-audit), with
no password in them."""
from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
import yaml
from console_lake import write_lake
from process_support import ROOT
from streamlit.testing.v1 import AppTest

from pipelines.contracts import schemas

pytestmark = pytest.mark.kafka
APP = ROOT / "dashboards" / "app.py"
SQL_PAGE = ROOT / "dashboards" / "pages" / "sql_box.py"
PASSWORD = "a long console password"


@pytest.fixture
def console(kafka, tmp_path, monkeypatch):
    """A data dir with a small lake and three users; the env points at it."""
    from dashboards import users

    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path))
    write_lake(tmp_path / "lake")
    users.write_users(users.users_path(), {"alice": ("analyst", PASSWORD),
                                           "dana": ("data_scientist", PASSWORD)})
    return tmp_path


def sign_in(username: str, password: str, at: AppTest | None = None) -> AppTest:
    at = at or AppTest.from_file(str(APP), default_timeout=60).run()
    at.text_input[0].input(username)
    at.text_input[1].input(password)
    return at.button[0].click().run()


def errors(at: AppTest) -> str:
    return " ".join(e.value for e in at.error)


def audits(since_ms: int) -> list[schemas.ConsoleAudit]:
    """Every console-audit event since ``since_ms`` (the topic is short: read from the start)."""
    from pipelines.kafka.clients import consumer

    async def go():
        c = consumer("console-audit")
        await c.start()
        try:
            ends = await c.end_offsets(list(c.assignment()))
            out = []
            while any([await c.position(tp) < end for tp, end in ends.items()]):
                for records in (await c.getmany(timeout_ms=500)).values():
                    out += [msgspec.json.decode(r.value, type=schemas.ConsoleAudit) for r in records]
            return [a for a in out if a.ts >= since_ms]
        finally:
            await c.stop()

    return sorted(asyncio.run(go()), key=lambda a: a.ts)


def test_failed_sign_ins_lock_the_name_out_then_it_opens_again(console, monkeypatch):
    monkeypatch.setenv("VIGIE_CONSOLE_LOCKOUT_S", "6")
    start = int(time.time() * 1000)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    for attempt in range(5):
        sign_in("alice", f"guess {attempt}", at)
        assert "auth" not in at.session_state
    assert "locked" in errors(at)
    # the right password, in a new session (a reload), is refused while the name is locked
    again = sign_in("alice", PASSWORD)
    assert "auth" not in again.session_state and "Too many failed sign-ins" in errors(again)
    # another process sees the same lockout: it lives in the data dir
    seen = subprocess.run([sys.executable, "-c", "from dashboards.users import Throttle; "
                           "print(Throttle().locked_for('alice'))"], cwd=ROOT, env=os.environ,
                          capture_output=True, text=True, check=True)
    assert float(seen.stdout) > 0, seen.stderr
    time.sleep(6.5)
    assert sign_in("alice", PASSWORD).session_state["auth"] == {"username": "alice",
                                                                "role": "analyst"}
    kinds = [(a.kind, a.actor, a.outcome) for a in audits(start)]
    assert kinds == [("sign_in_failed", "alice", "wrong username or password")] * 4 + [
        ("locked_out", "alice", "wrong username or password"),
        ("sign_in_failed", "alice", "locked out"), ("sign_in", "alice", "")]


def test_an_unknown_name_is_answered_like_a_known_one(console):
    from dashboards import common

    start = int(time.time() * 1000)
    known, unknown = sign_in("alice", "not it"), sign_in("mallory", "not it")
    assert errors(known) == errors(unknown) == "Wrong username or password."
    for _ in range(4):
        sign_in("mallory", "still not it")
    assert "Too many failed sign-ins" in errors(sign_in("mallory", "not it"))  # locked alike
    # as long to check: bcrypt runs for an unknown name too (generous bound: half the time)
    def timed(name: str) -> float:
        t = time.perf_counter()
        assert common.check_password(name, "not it") is None
        return time.perf_counter() - t

    known_s = statistics.median(timed("dana") for _ in range(7))
    unknown_s = statistics.median(timed("nobody-here") for _ in range(7))
    assert unknown_s > known_s / 2, (known_s, unknown_s)
    # the audit never records a name that is not a user (it may be a mistyped password)
    failed = [a for a in audits(start) if a.kind in ("sign_in_failed", "locked_out")]
    assert [a.actor for a in failed] == ["alice"] + [None] * 6
    assert all("mallory" not in msgspec.json.encode(a).decode() for a in failed)


def _users(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data["users"])
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("change, why", [
    (lambda users: users.pop("dana"), "user removed"),
    (lambda users: users["dana"].update(role="analyst"),
     "role changed from data_scientist to analyst"),
])
def test_a_removed_or_re_roled_users_session_ends_at_the_next_click(console, change, why):
    from dashboards import users as users_mod

    start = int(time.time() * 1000)
    at = sign_in("dana", PASSWORD)
    assert at.session_state["auth"]["role"] == "data_scientist"
    _users(users_mod.users_path(), change)
    at.run()  # the next click
    assert "auth" not in at.session_state
    assert f"Your session ended ({why})" in " ".join(e.value for e in [*at.warning, *at.error])
    # a page opened directly (a bookmarked SQL page) refuses too
    page = AppTest.from_file(str(SQL_PAGE), default_timeout=60)
    page.session_state["auth"] = {"username": "dana", "role": "data_scientist"}
    page.run()
    assert "session ended" in errors(page) and not page.dataframe
    ended = [a for a in audits(start) if a.kind == "session_ended"]
    assert ended and {(a.actor, a.outcome) for a in ended} == {("dana", why)}


def test_sql_queries_are_audited_and_a_query_over_the_memory_limit_is_refused(console, monkeypatch):
    monkeypatch.setenv("VIGIE_SQL_MEMORY_LIMIT", "64MB")
    start = int(time.time() * 1000)
    at = sign_in("dana", PASSWORD)
    page = AppTest.from_file(str(SQL_PAGE), default_timeout=60)
    page.session_state["auth"] = at.session_state["auth"]
    page.run()
    page.text_area(key="sql").input("SELECT count(*) AS n FROM transfer_requests")
    page.button(key="run").click().run()
    assert not page.error and page.dataframe[0].value["n"][0] > 0
    big = "SELECT list(i) FROM range(30000000) t(i)"  # 240 MB of integers in one list
    page.text_area(key="sql").input(big)
    page.button(key="run").click().run()
    assert "over the SQL page's memory limit (64MB)" in " ".join(t.value for t in page.text)
    page.text_area(key="sql").input("COPY transfer_requests TO '/tmp/x.csv'")
    page.button(key="run").click().run()
    assert page.error  # the sandbox's refusals hold
    logged = audits(start)
    assert [a.kind for a in logged] == ["sign_in", "sql_query", "sql_query", "sql_query"]
    ok, over, copy = logged[1:]
    assert (ok.actor, ok.role, ok.rows, ok.outcome) == ("dana", "data_scientist", 1, "ok")
    assert ok.sql == "SELECT count(*) AS n FROM transfer_requests" and ok.duration_ms > 0
    assert over.sql == big and over.outcome.startswith("MemoryError: over the SQL page's memory")
    assert over.rows is None
    assert copy.outcome.startswith("ValueError: one read-only query")
    assert all(PASSWORD not in msgspec.json.encode(a).decode() for a in logged)


def test_the_console_audit_reaches_the_lake_and_the_audit_query(console):
    """The lake sink stores every topic it knows (console-audit among them); the audit page's
    query reads it back, newest first."""
    from dashboards import common
    from pipelines.lake import parquet as lake

    now = int(time.time() * 1000)
    events = [schemas.ConsoleAudit(id=f"cu-{i}", ts=now + i, kind=kind, actor="dana",
                                   role="data_scientist", sql=sql)
              for i, (kind, sql) in enumerate([("sign_in", ""), ("sql_query", "SELECT 1")])]
    table = lake.TopicTable("console-audit", with_kafka_columns=True)
    lake.write_batch(console / "lake", "console-audit", table, events, "audit", partitions=[0, 0],
                     offsets=[0, 1])
    shown = common.console_audit(since_ms=now)
    assert list(shown["kind"]) == ["sql_query", "sign_in"] and list(shown["sql"])[0] == "SELECT 1"
    assert str(shown["time"].dtype).startswith("datetime64")
    # and a lead reads them on the audit page's second tab
    from console_lake import signed_in
    from process_support import ROOT
    from streamlit.testing.v1 import AppTest

    at = signed_in(AppTest.from_file(str(ROOT / "dashboards" / "pages" / "audit_log.py"),
                                     default_timeout=60), "leo", "lead")
    at.run()
    assert not at.exception and not at.error
    audit = at.dataframe[1].value
    assert {"sql_query", "sign_in"} <= set(audit["kind"]) and "SELECT 1" in set(audit["sql"])
