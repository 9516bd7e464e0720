"""The typed settings (issue 13): one pydantic-settings object read from the environment, a bad
value refused by its variable's name, a changed variable seen by the next read, and the Kafka
and secrets logic ``load()`` builds on it unchanged."""
from __future__ import annotations

import subprocess
import sys

import pytest
from process_support import ROOT

from pipelines.contracts import settings


def test_a_value_that_does_not_parse_is_refused_by_its_variable(monkeypatch):
    monkeypatch.setenv("VIGIE_PARTITIONS", "abc")
    monkeypatch.setenv("VIGIE_NO_DECISION_FALLBACK", "pay")  # not hold or block
    with pytest.raises(settings.InvalidSetting) as refused:
        settings.load()
    assert "VIGIE_PARTITIONS='abc'" in str(refused.value)
    assert "VIGIE_NO_DECISION_FALLBACK='pay'" in str(refused.value)  # every bad one, at once
    monkeypatch.setenv("VIGIE_PARTITIONS", "0")
    monkeypatch.delenv("VIGIE_NO_DECISION_FALLBACK")
    with pytest.raises(settings.InvalidSetting, match="VIGIE_PARTITIONS='0'"):
        settings.environment()


def test_the_command_line_says_which_variable_is_wrong_without_a_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "VIGIE_DEMO": "1", "VIGIE_DATA_DIR": str(tmp_path),
           "VIGIE_CONSOLE_LOCKOUT_S": "five minutes"}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "topics"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "VIGIE_CONSOLE_LOCKOUT_S='five minutes'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_next_read_sees_a_changed_variable_and_an_unchanged_one_is_not_read_again(monkeypatch):
    monkeypatch.setenv("VIGIE_PARTITIONS", "7")
    first = settings.environment()
    assert settings.environment() is first  # nothing changed: no model built again
    assert settings.load().partitions == 7
    monkeypatch.setenv("VIGIE_PARTITIONS", "")  # empty: unset, the default
    assert settings.environment() is not first
    assert settings.load().partitions == 4
    monkeypatch.setenv("VIGIE_RECOVERY_SLA_SECURED_S", "12.5")
    assert settings.environment().recovery.sla_s("secured") == 12.5
    assert settings.environment().recovery.sla_s("restored") == 0  # a state without an SLA


def test_only_one_is_a_demo(monkeypatch):
    for value, demo in (("1", True), ("0", False), ("true", False), ("", False)):
        monkeypatch.setenv("VIGIE_DEMO", value)
        assert settings.is_demo() is demo, value


def test_kafka_settings_as_before(monkeypatch, tmp_path):
    monkeypatch.setenv("VIGIE_SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("VIGIE_BROKER_PORT", "19555")
    monkeypatch.setenv("VIGIE_KAFKA_PRINCIPAL", "worker")
    kafka = settings.load().kafka
    assert kafka.bootstrap_servers == "127.0.0.1:19555"
    assert (kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username) == (
        "SASL_PLAINTEXT", "SCRAM-SHA-256", "worker")
    assert kafka.sasl_password_file == tmp_path / "kafka" / "worker"
    # a username given for another cluster wins over the principal
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9093")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "vigie")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret-pw")
    kafka = settings.load().kafka
    assert (kafka.bootstrap_servers, kafka.sasl_username, kafka.password()) == (
        "kafka.example:9093", "vigie", "s3cret-pw")
    assert kafka.sasl_password_file is None
    assert "s3cret-pw" not in repr(settings.environment())  # secrets stay out of logs
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(settings.InvalidSetting, match="KAFKA_SECURITY_PROTOCOL='TLS'"):
        settings.load()


def test_directories_follow_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("VIGIE_SECRETS_DIR")
    assert settings.data_dir() == tmp_path / "data"
    assert settings.secrets_dir() == tmp_path / "data" / "secrets"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIGIE_DATA_DIR", "relative")  # resolved against the working directory
    assert settings.load().lake_dir == tmp_path / "relative" / "lake"
