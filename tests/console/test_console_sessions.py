"""A sign-in kept across reloads: the signed, expiring session cookie (users.Sessions), written into
the browser at sign-in, read back by a new session (a reload), refused once forged, expired or
signed out; and single sign-on's mapping of a verified email to a console user."""
from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest
from test_console import DASH, PASSWORD, console, ok  # noqa: F401 (console: the fixture)

from dashboards import common, users

pytestmark = pytest.mark.kafka


def _app(monkeypatch, cookies: dict) -> AppTest:
    """The console's home as a new browser session (a reload) sending ``cookies``."""
    monkeypatch.setattr(common, "browser_cookies", lambda: dict(cookies))
    return AppTest.from_file(str(DASH / "app.py"), default_timeout=60).run()


def _cookie_written(at: AppTest) -> str:
    scripts = [h.proto.body for h in at.html if users.COOKIE in h.proto.body]
    assert scripts, "sign-in writes the session cookie"
    return re.search(rf"{users.COOKIE}=([^;]+);", scripts[0]).group(1)


def test_sign_in_survives_a_reload_and_sign_out_ends_it_everywhere(console, monkeypatch):
    at = _app(monkeypatch, {})
    at.text_input[0].input("alice")
    at.text_input[1].input(PASSWORD)
    at.button[0].click().run()
    ok(at)
    token = _cookie_written(at)
    assert "alice" not in token.split(".")[-1]  # the signature's part is not the name

    reloaded = _app(monkeypatch, {users.COOKIE: token})
    ok(reloaded)
    assert reloaded.session_state["auth"] == {"username": "alice", "role": "analyst"}
    assert [t.value for t in reloaded.title] == ["Overview"]
    assert not [h for h in reloaded.html if users.COOKIE in h.proto.body]  # written once only

    assert reloaded.button(key="sign_out")
    # AppTest loses the main script's sidebar on a second run of a page: the button's effect,
    # run as it is (the browser test clicks it)
    out = AppTest.from_function(_sign_out_alice, default_timeout=30).run()
    assert "auth" not in out.session_state and out.session_state["signed_out"]
    # the same cookie, replayed from another browser, no longer signs in
    again = _app(monkeypatch, {users.COOKIE: token})
    assert "auth" not in again.session_state and [t.value for t in again.title] == ["Vigie console"]


def _sign_out_alice():
    from dashboards import common

    common.sign_out({"username": "alice", "role": "analyst"})


@pytest.mark.parametrize("cookie", ["", "alice", "eyJ1IjoiYWxpY2UiLCJyIjoiYWRtaW4ifQ.forged.sig"])
def test_a_missing_or_forged_cookie_signs_nobody_in(console, monkeypatch, cookie):
    at = _app(monkeypatch, {users.COOKIE: cookie})
    ok(at)
    assert "auth" not in at.session_state


def test_a_cookie_signed_with_another_key_or_for_a_changed_role_is_refused(console, monkeypatch,
                                                                          tmp_path):
    other = users.Sessions(secrets_dir=tmp_path).issue({"username": "alice", "role": "analyst"})
    assert "auth" not in _app(monkeypatch, {users.COOKIE: other}).session_state
    # a valid token whose role is no longer the user's: the session ends at once
    stale = users.Sessions().issue({"username": "alice", "role": "admin"})
    at = _app(monkeypatch, {users.COOKIE: stale})
    assert "auth" not in at.session_state


def test_sessions_expire(console, monkeypatch):
    import time

    sessions = users.Sessions()
    token = sessions.issue({"username": "leo", "role": "lead"})
    assert sessions.check(token) == {"username": "leo", "role": "lead"}
    monkeypatch.setenv("VIGIE_CONSOLE_SESSION_S", "1")
    time.sleep(2.1)
    assert sessions.check(token) is None
    # signed out: refused before expiry too; a sign-in after it is fine
    monkeypatch.delenv("VIGIE_CONSOLE_SESSION_S")
    sessions.sign_out("leo")
    assert sessions.check(token) is None
    assert sessions.check(sessions.issue({"username": "leo", "role": "lead"}))


def test_single_sign_on_maps_a_verified_email_to_a_console_user(console, monkeypatch):
    """The OIDC round trip needs an identity provider (not testable here); what the console does
    with st.user is: a user whose users.yaml entry names that email, else nobody."""
    import yaml

    path = users.users_path()
    data = yaml.safe_load(path.read_text())
    data["users"]["leo"]["sso_email"] = "leo@bank.example"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(common, "sso_configured", lambda: True)
    monkeypatch.setattr(common, "browser_cookies", lambda: {})
    at = AppTest.from_file(str(DASH / "app.py"), default_timeout=60)
    at.user = {"is_logged_in": True, "email": "leo@bank.example"}
    at.run()
    ok(at)
    assert at.session_state["auth"] == {"username": "leo", "role": "lead"}
    stranger = AppTest.from_file(str(DASH / "app.py"), default_timeout=60)
    stranger.user = {"is_logged_in": True, "email": "mallory@example.com"}
    stranger.run()
    assert "auth" not in stranger.session_state
    assert stranger.button(key="sso")  # offered on the sign-in page
