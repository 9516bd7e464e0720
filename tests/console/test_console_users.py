"""`vigie console-users`: demo users with bcrypt hashes outside git, and the password printed."""
from __future__ import annotations

import re

from click.testing import CliRunner

from pipelines.cli import main


def test_console_users_makes_demo_users_and_prints_how_to_sign_in(tmp_path, monkeypatch):
    from dashboards import common, users

    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("VIGIE_CONSOLE_DEMO_PASSWORD", raising=False)
    result = CliRunner().invoke(main, ["console-users"])
    assert result.exit_code == 0, result.output
    password = re.search(r"password (\S+)", result.output).group(1)
    path = tmp_path / "console" / "users.yaml"
    assert users.users_path() == path and password not in path.read_text()
    assert common.check_password("alice", password, path) == "analyst"
    assert common.check_password("dana", password, path) == "data_scientist"
    assert common.check_password("root", password, path) == "admin"
    assert common.check_password("alice", "nope", path) is None
    assert common.check_password("mallory", password, path) is None
    # a second run sets a fresh password and keeps users added by hand
    users.write_users(path, {"zoe": ("lead", "zoe-secret")})
    again = CliRunner().invoke(main, ["console-users"])
    assert password not in again.output
    assert common.check_password("zoe", "zoe-secret", path) == "lead"
    assert common.check_password("alice", password, path) is None


def test_console_command_serves_on_localhost(monkeypatch):
    from dashboards import users

    monkeypatch.setenv("VIGIE_CONSOLE_PORT", "8765")
    args = users.streamlit_args()
    assert args[:3] == ["-m", "streamlit", "run"] and args[3].endswith("dashboards/app.py")
    assert args[args.index("--server.address") + 1] == "127.0.0.1"
    assert args[args.index("--server.headless") + 1] == "true" and args[-1] == "8765"
