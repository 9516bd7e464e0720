"""`vigie promote`, `rollback`, `shadow` and `unshadow` are on the record: each needs a reason
and names its actor (the OS user unless `--actor`); without a reason nothing is sent. That they
reach the worker is shown in tests/stream/test_changes_in_flight.py; that the audit lists them,
in tests/console/test_console_held_and_audit.py."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from pipelines.cli import main, models as model_commands

COMMANDS = [["promote", "m-20260101-000000-deadbeef"], ["shadow", "m-20260101-000000-deadbeef"],
            ["rollback"], ["unshadow"]]


@pytest.fixture
def sent(monkeypatch, tmp_path):
    """What the commands would publish (the broker is not needed to refuse)."""
    out = []
    monkeypatch.setattr(model_commands, "send_model_update", lambda update, conf=None: out.append(update))
    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(model_commands.registry, "list_versions",
                        lambda root=None: ["m-20260101-000000-deadbeef"])
    return out


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
@pytest.mark.parametrize("reason", [None, "   "], ids=["no reason", "blank reason"])
def test_a_model_change_without_a_reason_is_refused_and_nothing_is_sent(sent, args, reason):
    result = CliRunner().invoke(main, args + ([] if reason is None else ["--reason", reason]))
    assert result.exit_code == 2, result.output
    assert f"a reason is required to {args[0]}: --reason TEXT" in result.output
    assert sent == []


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
def test_a_model_change_names_its_actor_and_reason(sent, args, monkeypatch):
    monkeypatch.setattr(model_commands.getpass, "getuser", lambda: "ops-ann")
    result = CliRunner().invoke(main, args + ["--reason", "  better recall at the same budget "])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, args + ["--reason", "night regression", "--actor", "dana"])
    assert result.exit_code == 0, result.output
    assert [(u.action, u.actor, u.reason) for u in sent] == [
        (args[0], "ops-ann", "better recall at the same budget"),
        (args[0], "dana", "night regression")]


def test_an_actor_that_is_not_a_name_is_refused(sent):
    result = CliRunner().invoke(main, ["rollback", "--reason", "x", "--actor", "two words"])
    assert result.exit_code == 2 and "actor" in result.output and sent == []


def test_promoting_a_version_not_in_the_registry_is_refused(sent):
    result = CliRunner().invoke(main, ["promote", "m-20990101-000000-00000000", "--reason", "x"])
    assert result.exit_code == 2 and "no model m-20990101-000000-00000000" in result.output
    assert sent == []
