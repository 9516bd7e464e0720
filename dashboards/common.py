"""What every console page shares: logins and roles, lake queries, and publishing actions.

The console reads the lake only through ``pipelines.lake.parquet.connect`` and changes nothing
itself: every action is an event published to Kafka, signed by the console. Roles are checked
here, on the server, for every page (``require``) and again for every action
(``publish_action``); the user is looked up again in the users file at every run, so a removed
or re-roled user's session ends at their next click. Sign-ins and SQL queries are audited
(``audit``, the ``console-audit`` topic). Text from events is shown with ``st.text`` /
``st.dataframe`` only, never as markdown. Why: docs/console.md.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import urlencode

import bcrypt
import pandas as pd
import streamlit as st
import yaml

from dashboards.lake_totals import LakeTotals
from dashboards.queue_index import EVER_SQL, QueueIndex
from dashboards.users import COOKIE, ROLES, Sessions, Throttle, session_s, users_path
from features import glossary
from features.vector import FEATURE_NAMES
from models.policy import RULES_ONLY
from pipelines.contracts import settings as settings_mod, signatures
from pipelines.contracts.schemas import (ACTION_ROLES, AnalystAction, ConsoleAudit, Label,
                                         ModelUpdate)
from pipelines.contracts.topics import TOPICS
from pipelines.kafka import lag
from pipelines.kafka.clients import Publisher
from pipelines.lake import parquet as lake_mod

log = logging.getLogger(__name__)
ALL = ROLES
REFRESH_S = 5  # cached lake queries are re-run at most this often
# Who may do what (ACTION_ROLES, from the AnalystAction contract): checked server-side by
# publish_action whatever the page shows, and again by the worker on the signed action.
REASON_REQUIRED = {"block", "confirm_fraud", "mark_legitimate", "add_to_list", "remove_from_list",
                   "rule_change", "promote", "rollback", "assign", "open_case"}


class Refused(Exception):
    """An action the signed-in user may not take, or one that is incomplete."""


# --- settings and users ---------------------------------------------------------------------
def conf() -> settings_mod.Settings:
    return settings_mod.load()


def lake_dir() -> Path:
    return conf().lake_dir


def load_users(path: Optional[Path] = None) -> dict:
    path = path or users_path()
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return data.get("users", {})


# An unknown name is checked against this hash, at the users' cost (rounds=10 like theirs):
# the answer takes as long as for a known name with a wrong password.
_NOBODY = bcrypt.hashpw(b"no such user", bcrypt.gensalt(rounds=10))


def check_password(username: str, password: str, path: Optional[Path] = None) -> Optional[str]:
    """The user's role if the password is right, else None (same answer, in the same time, for
    an unknown user)."""
    user = load_users(path).get(username)
    stored = user["password_hash"].encode() if user else _NOBODY
    right = bcrypt.checkpw(password.encode(), stored)  # even for an empty password: same time
    if user and password and right and user["role"] in ROLES:
        return user["role"]
    return None


def sign_in(username: str, password: str) -> tuple[Optional[dict], str]:
    """(the session's user, "") or (None, why not): a locked name is refused whatever the
    password; each failure counts towards the lockout. Every outcome is audited; a sign-in is
    refused if its audit cannot be written (a failure's audit is best effort: the lockout
    counts it anyway)."""
    throttle = Throttle()
    known = username if username in load_users() else None  # never record a mistyped password
    left = throttle.locked_for(username)
    if left:
        audit("sign_in_failed", strict=False, actor=known, outcome="locked out")
        return None, f"Too many failed sign-ins: try again in {max(1, round(left / 60))} min."
    role = check_password(username, password)
    if not role:
        locked = throttle.failed(username)
        audit("locked_out" if locked else "sign_in_failed", strict=False, actor=known,
              outcome="wrong username or password")
        return None, "Wrong username or password." + (
            " Too many failed sign-ins: this name is locked for a while." if locked else "")
    user = {"username": username, "role": role}
    try:
        audit("sign_in", actor=username, role=role)
    except Exception as exc:  # the broker is down: no unaudited session
        return None, f"Cannot sign in now: the audit log is unreachable ({exc.__class__.__name__})."
    throttle.succeeded(username)
    return user, ""


def is_username(name: str) -> bool:
    return name in load_users()


def browser_cookies() -> dict:
    """The cookies the browser sent when this session's page loaded (the tests replace it:
    AppTest cannot send cookies)."""
    return dict(st.context.cookies)


def sso_configured() -> bool:
    """Single sign-on (``st.login``, OIDC) is on when the console's secrets have an ``[auth]``
    section (docs/console.md#single-sign-on)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def sso_user() -> Optional[dict]:
    """The console user whose ``sso_email`` in users.yaml is the identity provider's verified
    email for this browser, if single sign-on is on and someone signed in through it."""
    if not sso_configured() or not st.user.get("is_logged_in"):
        return None
    email = st.user.get("email")
    for name, entry in load_users().items():
        if email and entry.get("sso_email") == email:
            return {"username": name, "role": entry.get("role")}
    return None


def _resumed() -> Optional[dict]:
    """A sign-in kept across a reload: the session cookie's user, or single sign-on's. Audited
    as a sign-in (outcome: how)."""
    user, how = Sessions().check(browser_cookies().get(COOKIE)), "session cookie"
    if not user:
        user, how = sso_user(), "single sign-on"
    if user:
        audit("sign_in", strict=False, actor=user["username"], role=user["role"], outcome=how)
        st.session_state["auth"] = user
    return user


def current_user() -> Optional[dict]:
    """The signed-in user, checked against the users file at every run: a user removed or given
    another role since signing in is signed out now (audited) and must sign in again. A new
    session (a reload, a new tab) resumes from the signed session cookie or single sign-on."""
    auth = st.session_state.get("auth")
    if not auth and not st.session_state.get("signed_out"):
        auth = _resumed()
    if not auth:
        return None
    now = load_users().get(auth["username"])
    if now and now.get("role") == auth["role"]:
        return auth
    why = "user removed" if not now else f"role changed from {auth['role']} to {now.get('role')}"
    st.session_state.pop("auth", None)
    st.session_state["session_ended"] = f"Your session ended ({why}): sign in again."
    audit("session_ended", strict=False, actor=auth["username"], role=auth["role"], outcome=why)
    return None


def keep_signed_in(user: dict) -> None:
    """Write the signed session cookie (``users.Sessions``) into the browser, once per sign-in:
    a small script in the page (Streamlit has no call to set a cookie). Not HttpOnly (a script
    writes it); SameSite=Strict; it expires with the token."""
    token = Sessions().issue(user)
    st.html(f"<script>document.cookie = '{COOKIE}={token}; Path=/; Max-Age={int(session_s())}; "
            "SameSite=Strict';</script>", unsafe_allow_javascript=True)


def sign_out(user: dict) -> None:
    """End the session here and every session cookie of this name (``Sessions.sign_out``)."""
    Sessions().sign_out(user["username"])
    st.session_state.pop("auth", None)
    st.session_state["signed_out"] = True  # the next page load clears the cookie
    audit("signed_out", strict=False, actor=user["username"], role=user["role"])


def forget_cookie() -> None:
    st.html(f"<script>document.cookie = '{COOKIE}=; Path=/; Max-Age=0; SameSite=Strict';</script>",
            unsafe_allow_javascript=True)


def require(*roles: str) -> dict:
    """Stop the page unless someone with one of ``roles`` is signed in. Call it first."""
    user = current_user()
    if not user:
        st.error(st.session_state.get("session_ended")
                 or "Sign in first (open the console's home page).")
        st.stop()
    if user["role"] not in roles:
        st.error(f"Access refused: this page is for {', '.join(roles)}; you are {user['role']}.")
        st.stop()
    return user


# --- the lake ---------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=4)
def _database(lake: str, topics: tuple[str, ...]):
    """One DuckDB database (the lake's views) per lake, kept for the console's life: building
    the views costs about 0.3 s on a 1M-transfer lake, which every query used to pay. The
    views list the files again at each query, so new batches show up; the key holds the topics
    that have files, so a topic's first file replaces its empty stand-in with a real view."""
    return lake_mod.connect(lake)


@st.cache_resource(show_spinner=False, max_entries=4)
def _queue_index(lake: str, topics: tuple[str, ...]) -> QueueIndex:
    """The queue's rows (``dashboards/queue_index.py``), kept for the console's life, keyed like
    ``_database``; its first build (a scan of three topics) starts now, in the background."""
    index = QueueIndex(lake)
    threading.Thread(target=index.refresh, name="queue-index", daemon=True).start()
    return index


@st.cache_resource(show_spinner=False, max_entries=4)
def _lake_totals(lake: str) -> LakeTotals:
    """The overview's whole-lake totals (``dashboards/lake_totals.py``), kept for the console's
    life; each file is aggregated once, the first time now, in the background."""
    totals = LakeTotals(lake)
    threading.Thread(target=totals.get, name="lake-totals", daemon=True).start()
    return totals


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def _totals(lake: str) -> dict:
    return _lake_totals(lake).get()


def lake_totals() -> dict:
    """Transfers, decisions (not shadow) and the last decision's ts over the whole lake: the
    same figures as counting the views, from per-file counts."""
    return _totals(str(lake_dir()))


def _with_data(lake: str) -> tuple[str, ...]:
    return tuple(t for t in TOPICS if lake_mod.has_data(lake, t))


def queue_index() -> QueueIndex:
    """The console's queue index of its lake (app.py asks for it at start: it builds meanwhile)."""
    lake = str(lake_dir())
    return _queue_index(lake, _with_data(lake))


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def _query(lake: str, sql: str, params: tuple, source: str = "lake") -> pd.DataFrame:
    """``sql`` on the lake's views, or (``source="queue"``) on the queue index's."""
    if source == "queue":
        return _queue_index(lake, _with_data(lake)).query(sql, params)
    con = _database(lake, _with_data(lake)).cursor()  # a cursor per query: sessions run in threads
    try:
        return con.execute(sql, list(params)).df()
    finally:
        con.close()


def q(sql: str, *params) -> pd.DataFrame:
    """A cached (REFRESH_S seconds) read-only query over the lake's views."""
    return _query(str(lake_dir()), sql, tuple(params))


def queue_q(sql: str, *params) -> pd.DataFrame:
    """``q`` on the queue index (``dashboards/queue_index.py``): for SQL that reads
    transfer-status, decisions and transfer-requests only about transfers ever held or cancelled
    (``HELD_SQL``, the overview's ``HEEDED_SQL``); the same answer as on the lake, without the
    full scans."""
    return _query(str(lake_dir()), sql, tuple(params), "queue")


def since(topic: str, since_ms: int) -> str:
    """A table expression for ``topic``'s rows that may have ``ts >= since_ms``: only the hour
    folders from ``since_ms``'s hour on (the lake files an event under its own ts's hour,
    ``lake.parquet.write_batch``), where the topic's view opens every file of the lake to read its
    statistics (0.1 to 0.3 s for a 1M-transfer lake's 360 hours). Filter on ``ts`` as well."""
    first = "hour=" + lake_mod.hour_of(max(0, since_ms))
    files = sorted(str(f) for d in (lake_dir() / topic).glob("hour=*") if d.name >= first
                   for f in d.glob("*.parquet"))
    if not files:
        return f"(SELECT * FROM {lake_mod.view_name(topic)} WHERE false)"
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"read_parquet([{listing}], union_by_name=true, hive_partitioning=false)"


def now_ms() -> int:
    """The console's clock: wall time, or the lake's last event when the lake is a replayed
    history (so ages and deadlines stay meaningful on simulated data)."""
    wall = int(time.time() * 1000)
    # The newest event is in the newest hour's folder: read that one, not the whole topic.
    newest = next((h for h in sorted((lake_dir() / "transfer-requests").glob("hour=*"), reverse=True)
                   if any(h.glob("*.parquet"))), None)
    last = q("SELECT max(ts) FROM read_parquet(?)", str(newest / "*.parquet")).iloc[0, 0] if newest else None
    if last is None or pd.isna(last):
        return wall
    return wall if wall - int(last) < 3_600_000 else int(last)


# Analyst actions the worker refused (a second decision on a transfer, a conflicting claim...):
# their ids and reasons, from the analyst-actions topic's dead letters (pipelines/stream/router.py).
REFUSED_ACTIONS_SQL = """
SELECT try(json_extract_string(decode(from_base64(original_b64)), '$.id')) AS id,
       any_value(reason) AS refused
FROM dead_letters WHERE topic = 'analyst-actions' GROUP BY 1"""

# Every transfer whose money is held now (docs/console.md#queue): its latest payment status is
# ``held``, whatever held it (a decision or rule, an account lock, the no-decision fallback, a
# late decision kept held), or the stream held it and the payment service's status is not in
# the lake yet. With the status's reason (``held_by``: the late decision is in it) and the latest
# automated decision, if any. A rules-only decision has no score (``decide.RULES_ONLY``); risk x
# amount counts an unscored transfer at its whole amount, so it is not buried at the bottom.
HELD_SQL = """
WITH refused AS (""" + REFUSED_ACTIONS_SQL + """),
ever AS (  -- the few transfers ever held: every scan below is narrowed to them
    SELECT DISTINCT transfer_id FROM (""" + EVER_SQL.format(transfer_status="transfer_status",
                                                        decisions="decisions") + """)),
s AS (  -- each one's latest status (a transfer's statuses are in one partition: offset order)
    SELECT transfer_id, status, reason AS held_by, id AS hold_id, ts AS status_ts,
           row_number() OVER (PARTITION BY transfer_id ORDER BY ts DESC, _offset DESC) AS rn
    FROM transfer_status WHERE transfer_id IN (SELECT transfer_id FROM ever)),
d AS (  -- each one's latest automated decision
    SELECT *, row_number() OVER (PARTITION BY transfer_id ORDER BY ts DESC) AS rn
    FROM decisions WHERE NOT coalesce(shadow, false) AND NOT starts_with(model_version, 'analyst:')
      AND transfer_id IN (SELECT transfer_id FROM ever)),
c AS (SELECT target AS transfer_id,
             arg_max(CASE WHEN action = 'assign' THEN json_extract_string(params, '$.assignee')
                          ELSE actor END, ts) AS owner
      FROM analyst_actions a LEFT JOIN refused r USING (id)
      WHERE action IN ('claim', 'assign') AND target_kind = 'transfer' AND r.refused IS NULL
      GROUP BY 1),
held AS (
    SELECT transfer_id, coalesce(s.status, 'pending') AS status,
           CASE WHEN s.status = 'held' THEN s.held_by ELSE 'decision:hold (payment not applied yet)'
           END AS held_by,
           CASE WHEN s.status = 'held' THEN s.hold_id END AS hold_id,
           CASE WHEN s.status = 'held' THEN s.status_ts END AS held_ts
    FROM ever LEFT JOIN (SELECT * FROM s WHERE rn = 1) s USING (transfer_id)
    LEFT JOIN (SELECT * FROM d WHERE rn = 1) d USING (transfer_id)
    WHERE s.status = 'held' OR (coalesce(s.status, 'pending') = 'pending' AND d.action = 'hold'))
SELECT h.transfer_id, h.held_by, d.action AS decision, d.ts AS decided_ts, t.ts AS requested_ts,
       t.sender, t.recipient, t.amount_cents,
       CASE WHEN d.model_version = '""" + RULES_ONLY + """' THEN NULL ELSE d.score END AS score,
       coalesce(CASE WHEN d.model_version = '""" + RULES_ONLY + """' THEN NULL ELSE d.score END, 1.0)
           * t.amount_cents AS risk_amount,
       d.model_version, d.rule_hits, d.list_hits, d.reasons, d.features, t.payout_due_ts,
       t.device, t.card, h.status, h.hold_id, h.held_ts, c.owner
FROM held h JOIN transfer_requests t USING (transfer_id)
LEFT JOIN (SELECT * FROM d WHERE rn = 1) d USING (transfer_id) LEFT JOIN c USING (transfer_id)
"""


# Transfers their senders cancelled after an automated warn (the warning's code from its in-chat
# notification), split by the latest label on the transfer: fraud the warning stopped, and honest
# payments it cost (friction). The same figures on a simulated history:
# docs/bench.md#warnings-warning_effectspy. It reads only cancelled transfers: the overview runs it
# on the queue index (``queue_q``).
HEEDED_SQL = """
WITH cancelled AS (SELECT transfer_id, min(ts) AS ts FROM transfer_status
                   WHERE status = 'cancelled' GROUP BY 1),
warned AS (SELECT transfer_id, min(ts) AS ts FROM decisions
           WHERE action = 'warn' AND NOT coalesce(shadow, false)
             AND NOT starts_with(model_version, 'analyst:') GROUP BY 1),
codes AS (SELECT transfer_id, arg_max(code, ts) AS code FROM notifications
          WHERE kind = 'transfer_warning' GROUP BY 1),
verdict AS (SELECT transfer_id, arg_max(is_fraud, known_at) AS is_fraud FROM labels
            WHERE transfer_id IS NOT NULL GROUP BY 1)
SELECT coalesce(k.code, 'unknown') AS warning,
       CASE WHEN v.is_fraud THEN 'fraud' ELSE 'honest' END AS label,
       count(*) AS transfers, sum(t.amount_cents) AS amount_cents
FROM cancelled c JOIN warned w ON w.transfer_id = c.transfer_id AND w.ts <= c.ts
JOIN transfer_requests t ON t.transfer_id = c.transfer_id
LEFT JOIN codes k ON k.transfer_id = c.transfer_id
LEFT JOIN verdict v ON v.transfer_id = c.transfer_id
GROUP BY 1, 2 ORDER BY 1, 2"""


def review_sla_s() -> float:
    return settings_mod.environment().console.review_sla_s


def held_transfers() -> pd.DataFrame:
    """The queue, with ``minutes_left``: the time left before the transfer's money moves or its
    review is overdue. Not ``payout_due_ts`` alone: that is the end of the availability delay
    (30 s after the request), always past by the time a hold reaches the queue; a hold stops
    that payout clock and the money waits for an analyst. So: a stream hold the payment service
    has not applied yet pays out (or the fallback holds it) at ``payout_due_ts``; a held
    transfer is due for review ``VIGIE_REVIEW_SLA_S`` after it was held."""
    df = queue_q(HELD_SQL + " ORDER BY risk_amount DESC, requested_ts")
    now = now_ms()
    df["age_min"] = (now - df["requested_ts"]) / 60_000
    held_at = df["held_ts"].fillna(df["decided_ts"]).fillna(df["requested_ts"])
    due = (held_at + review_sla_s() * 1000).where(df["status"] == "held", df["payout_due_ts"])
    df["due_ts"] = due
    df["minutes_left"] = (due - now) / 60_000
    df["amount_eur"] = df["amount_cents"] / 100
    df["rules"] = [", ".join(parse_json(v, [])) for v in df["rule_hits"]]
    return df


def link(page: str, **params) -> str:
    """A deep link to ``page`` (its file name) opening one item, to paste into a ticket:
    relative, so it works behind any host or base path."""
    return f"{page}?" + urlencode(params)


# A console model change is an AnalystAction (role, reason; params.update: its update's id) and
# the ModelUpdate it sends (id ``CONSOLE_UPDATE``…); ``vigie promote`` and the others send the
# update alone. The audit lists each change once: the console's as its action, the others as
# their update (role "command line"); either with the worker's refusal if it refused it.
CONSOLE_UPDATE = "cm-"
AUDIT_SQL = """
WITH refused AS (""" + REFUSED_ACTIONS_SQL + """),
refused_updates AS (
    SELECT try(json_extract_string(decode(from_base64(original_b64)), '$.id')) AS id,
           any_value(reason) AS refused
    FROM dead_letters WHERE topic = 'model-updates' GROUP BY 1),
audit AS (
    SELECT a.ts, a.actor, a.role, a.action, a.target_kind, a.target, a.reason,
           CAST(a.params AS VARCHAR) AS params, coalesce(r.refused, ru.refused) AS refused
    FROM analyst_actions a LEFT JOIN refused r USING (id)
    LEFT JOIN refused_updates ru ON ru.id = json_extract_string(a.params, '$.update')
    UNION ALL
    SELECT u.ts, u.actor, 'command line' AS role, u.action, 'model' AS target_kind,
           u.version AS target,
           -- through the row's JSON: a lake whose updates all predate the field has no column
           coalesce(json_extract_string(to_json(u), '$.reason'), '') AS reason, NULL AS params,
           ru.refused
    FROM model_updates u LEFT JOIN refused_updates ru USING (id)
    WHERE NOT starts_with(u.id, '""" + CONSOLE_UPDATE + """'))
SELECT * FROM audit WHERE (? = '' OR actor = ?) AND (? = '' OR action = ?)
ORDER BY ts DESC LIMIT 2000"""


def audit_log(actor: str = "", action: str = "") -> pd.DataFrame:
    """Analyst actions and model changes, newest first (the latest 2000), with the worker's
    refusal of any it refused."""
    return q(AUDIT_SQL, actor, actor, action, action)


def acting_model() -> Optional[str]:
    """The model the stream decides with now, as its latest automated decision of the last day
    names it (``decide.RULES_ONLY``: none promoted, or none it can load); with no such decision,
    RULES_ONLY unless a promotion is on record, else None (unknown)."""
    since_ms = (now_ms() - 86_400_000) // 3_600_000 * 3_600_000
    latest = q(f"""SELECT arg_max(model_version, ts) FROM {since('decisions', since_ms)}
                  WHERE ts >= ? AND NOT coalesce(shadow, false)
                    AND NOT starts_with(model_version, 'analyst:')""", since_ms).iloc[0, 0]
    if isinstance(latest, str):
        return latest
    promoted = q("SELECT count(*) FROM model_updates WHERE action = 'promote'").iloc[0, 0]
    return None if promoted else RULES_ONLY


NO_MODEL_NOTE = ("No model promoted: decisions by rules and lists alone (a transfer no rule or list "
                 "decides is held for review). A data scientist promotes one on Models & data "
                 "quality, or `vigie promote VERSION --reason …`.")


def no_model_note() -> None:
    """Say so when no model acts (overview, review queue)."""
    if acting_model() == RULES_ONLY:
        st.warning(NO_MODEL_NOTE)


LAG_ALERT = 1_000  # events; at the demo's 50 events/s, 20 s behind: most of the decision window


@st.cache_data(ttl=REFRESH_S, show_spinner=False)
def consumer_lag(bootstrap: str) -> tuple[pd.DataFrame, Optional[str]]:
    """The decision worker's consumer lag per topic and partition (``pipelines.kafka.lag``), and
    why it could not be read (None when it could). ``bootstrap`` keys the cache."""
    try:
        rows = lag.group_lag_sync()
    except Exception as exc:  # broker down or unreachable: the page says so and carries on
        return pd.DataFrame(), f"{exc.__class__.__name__}: {exc}"
    return pd.DataFrame(rows, columns=["topic", "partition", "committed", "end", "lag"]), None


def parse_json(value, default):
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return default
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return default


# --- publishing -------------------------------------------------------------------------------
def _publish(events: list[tuple[str, object]]) -> None:
    """Publish to Kafka, acks=all: once this returns the broker has every event."""
    async def send():
        pub = await Publisher(conf(), request_timeout_ms=10_000).start()
        try:
            for topic, event in events:
                await pub.publish(topic, event)
        finally:
            await pub.stop()

    asyncio.run(send())


def audit(kind: str, strict: bool = True, **fields) -> None:
    """Publish one ConsoleAudit event (acks=all). ``strict``: raise if it cannot be written;
    else log that it could not, and carry on."""
    event = ConsoleAudit(id=f"cu-{uuid.uuid4().hex}", ts=int(time.time() * 1000), kind=kind,
                         **fields)
    try:
        _publish([("console-audit", event)])
    except Exception as exc:
        if strict:
            raise
        log.warning("console audit %s not written: %s", kind, exc.__class__.__name__)


CONSOLE_AUDIT_SQL = """
SELECT ts, kind, actor, role, outcome, sql, rows, duration_ms
FROM console_audit WHERE ts >= ? ORDER BY ts DESC LIMIT ?"""


def console_audit(since_ms: int = 0, limit: int = 1000) -> pd.DataFrame:
    """The console's own audit (sign-ins, failed ones, lockouts, ended sessions, SQL queries),
    newest first, with ``time`` as a datetime, for the audit page."""
    df = q(CONSOLE_AUDIT_SQL, since_ms, limit)
    df["time"] = pd.to_datetime(df["ts"], unit="ms")
    return df


def publish_action(action: str, target_kind: str, target: str, reason: str = "",
                   params: Optional[dict] = None, extra: Iterable[tuple[str, object]] = ()) -> str:
    """Check the signed-in user's role, then publish one audited AnalystAction (and the
    ``extra`` events that go with it, e.g. a Label). Returns the action's event id."""
    user = current_user()
    if not user:
        raise Refused("not signed in")
    if user["role"] not in ACTION_ROLES.get(action, ()):
        raise Refused(f"{action} is not allowed for the role {user['role']}")
    reason = (reason or "").strip()
    if action in REASON_REQUIRED and not reason:
        raise Refused(f"a reason is required to {action.replace('_', ' ')}")
    event = _action_event(user, action, target_kind, target, reason, params)
    _publish([("analyst-actions", event), *extra])
    return event.id


def _action_event(user: dict, action: str, target_kind: str, target: str, reason: str,
                  params: Optional[dict]):
    """The action, signed by the console: the worker applies nothing unsigned."""
    return signatures.sign(AnalystAction(
        id=f"ca-{uuid.uuid4().hex}", ts=int(time.time() * 1000), actor=user["username"],
        role=user["role"], action=action, target_kind=target_kind, target=target,
        reason=reason.strip()[:500], params={k: str(v) for k, v in (params or {}).items()}))


def transfer_action(action: str, row: dict, reason: str) -> str:
    """release / block / confirm_fraud / mark_legitimate on one held transfer (a queue row).

    A verdict is a Label (training learns from it) and, since the transfer is still held, the
    decision that follows from it: confirm fraud also blocks it, mark legitimate also releases
    it (a second audited action, with the same reason)."""
    check_claim(row)
    params = {"sender": row["sender"], "recipient": row["recipient"],
              "amount_cents": int(row["amount_cents"])}
    if isinstance(row.get("hold_id"), str):  # which hold this answers (Control.transfer_action)
        params["hold"] = row["hold_id"]
    extra = []
    if action in ("confirm_fraud", "mark_legitimate"):
        ts = int(time.time() * 1000)
        extra.append(("labels", Label(id=f"cl-{uuid.uuid4().hex}", ts=int(row.get("requested_ts") or ts),
                                      kind="analyst_verdict", account=row["sender"],
                                      transfer_id=row["transfer_id"],
                                      is_fraud=action == "confirm_fraud", known_at=ts)))
        follow = "block" if action == "confirm_fraud" else "release"
        if current_user() and (reason or "").strip():
            extra.append(("analyst-actions", _action_event(current_user(), follow, "transfer",
                                                           row["transfer_id"], reason, params)))
    return publish_action(action, "transfer", row["transfer_id"], reason, params, extra)


def check_claim(row: dict) -> None:
    """Refuse to act on a transfer another analyst claimed (or was assigned): the owner acts, or
    a lead assigns it to someone else first (``assign`` is not checked)."""
    user = current_user()
    owner = row.get("owner")
    if user and isinstance(owner, str) and owner != user["username"]:
        raise Refused(f"transfer {row['transfer_id']} is claimed by {owner}: ask them, or a "
                      "lead to assign it to you")


def claim(row: dict, reason: str) -> str:
    check_claim(row)
    return publish_action("claim", "transfer", row["transfer_id"], reason)


def add_to_list(kind: str, value: str, which: str, days: int, reason: str) -> str:
    """Put an entity (account, device, card) on the block or allow list, for ``days`` (0: no
    end)."""
    params = {"list": which}
    if days:
        params["expires_ts"] = int(time.time() * 1000) + int(days) * 86_400_000
    return publish_action("add_to_list", kind, value, reason, params)


def model_update(action: str, version: str, reason: str) -> str:
    user = current_user() or {}
    update = ModelUpdate(id=f"{CONSOLE_UPDATE}{uuid.uuid4().hex}", ts=int(time.time() * 1000),
                         action=action, version=version, actor=user.get("username", "?"),
                         reason=(reason or "").strip()[:500])
    return publish_action(action, "model", version, reason,
                          {"version": version, "update": update.id},
                          extra=[("model-updates", update)])


def act(label: str, fn, *args, **kwargs) -> Optional[str]:
    """Run an action, showing success or the refusal; returns the event id or None."""
    try:
        event_id = fn(*args, **kwargs)
    except Refused as exc:
        st.error(f"Refused: {exc}")
        return None
    except Exception as exc:  # the broker is down, a validation failed: say so, keep the page
        st.error(f"{label} failed ({exc.__class__.__name__}):")
        st.text(str(exc))  # may quote what was typed: text, never markdown
        return None
    st.success(f"{label}: sent (event {event_id}); the stream applies it in a moment.")
    st.session_state.setdefault("sent_events", []).append(event_id)
    return event_id


def lang() -> str:
    """The glossary's language for this browser: French for a French locale, else English."""
    return "fr" if str(st.context.locale or "").lower().startswith("fr") else "en"


def meaning(feature: str) -> str:
    """A reason code (a feature name) in a short human sentence (``features.glossary``)."""
    return glossary.describe_or_name(feature, lang())


def glossary_table() -> pd.DataFrame:
    return pd.DataFrame([{"reason code": n, "meaning": glossary.describe_or_name(n, "en"),
                          "signification": glossary.describe_or_name(n, "fr")}
                         for n in FEATURE_NAMES])


def eur(cents) -> str:
    return f"{(cents or 0) / 100:,.2f} €"
