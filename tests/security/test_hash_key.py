"""The HMAC key that pseudonymizes identifiers is no public constant (issue 11, item 7): a demo's
is generated once per secrets dir, and anything else refuses to start without VIGIE_HASH_KEY."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from process_support import ROOT

from pipelines.contracts import settings

HASH_ALICE = ("from pipelines.contracts.privacy import pseudonymize; "
              "print(pseudonymize('account', 'alice'))")


def _env(**changes) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("VIGIE_DEMO", "VIGIE_HASH_KEY")}
    return {**env, **changes}


def test_outside_a_demo_a_service_does_not_start_without_the_key(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "serve", "payment", "--port", "1"],
                          cwd=ROOT, env=_env(VIGIE_SECRETS_DIR=str(tmp_path)), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "VIGIE_HASH_KEY is not set" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "hash.key").exists()  # and no key was made up for it


def test_outside_a_demo_settings_refuse_without_the_key(monkeypatch):
    monkeypatch.delenv("VIGIE_DEMO")
    monkeypatch.delenv("VIGIE_HASH_KEY", raising=False)
    with pytest.raises(settings.MissingSecret, match="VIGIE_HASH_KEY is not set"):
        settings.load()
    monkeypatch.setenv("VIGIE_HASH_KEY", "a key from the deployment's secret store")
    assert settings.load().hash_key == b"a key from the deployment's secret store"


def test_a_demo_key_is_made_once_per_secrets_dir_and_processes_started_together_agree(tmp_path):
    def start_many(secrets, n=6):
        env = _env(VIGIE_DEMO="1", VIGIE_SECRETS_DIR=str(secrets))
        procs = [subprocess.Popen([sys.executable, "-c", HASH_ALICE], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, text=True) for _ in range(n)]
        return {p.communicate(timeout=60)[0].strip() for p in procs}

    first = start_many(tmp_path / "one")
    assert len(first) == 1 and next(iter(first)).startswith("a_")
    key_file = tmp_path / "one" / "hash.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert len(key_file.read_text().strip()) >= 40  # 256 random bits
    assert start_many(tmp_path / "one", n=2) == first  # kept: the same lake, the same hashes
    assert start_many(tmp_path / "two", n=1) != first  # another demo, another key


def test_a_fresh_environment_hashes_as_its_children_do_and_as_before_once_left(tmp_path, monkeypatch):
    """The tests and benchmarks move this process into another deployment (a fresh broker and
    secrets dir, ``pipelines.bench.harness``) and back: the keyed hashes it makes must follow,
    or a list entry it writes never matches the account its child processes hash."""
    from pipelines.contracts import privacy

    before = privacy.pseudonymize("account", "alice")
    monkeypatch.setenv("VIGIE_SECRETS_DIR", str(tmp_path / "another"))
    assert privacy.pseudonymize("account", "alice") == before  # the key is read once...
    privacy.forget_key()  # ...so moving to another deployment forgets it
    env = {**os.environ, "VIGIE_SECRETS_DIR": str(tmp_path / "another")}
    child = subprocess.run([sys.executable, "-c", HASH_ALICE], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60).stdout.strip()
    assert privacy.pseudonymize("account", "alice") == child != before
    monkeypatch.undo()
    privacy.forget_key()
    assert privacy.pseudonymize("account", "alice") == before
