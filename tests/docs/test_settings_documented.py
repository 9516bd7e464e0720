"""Every ``VIGIE_*`` setting the code reads is in the README's configuration table: a name in
the source of the code packages (a read, a message that names it, or an f-string's prefix such
as ``VIGIE_RECOVERY_SLA_{state}_S``) that the table does not list fails here."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ("pipelines", "features", "models", "dashboards", "notebooks")
# a name, or the constant head of one built in an f-string ("VIGIE_RECOVERY_SLA_" + state)
NAME = re.compile(r"\bVIGIE_[A-Z0-9_]*[A-Z0-9_]")


def names_in_code() -> dict[str, str]:
    """name -> the first file that names it."""
    found: dict[str, str] = {}
    for package in CODE:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in NAME.findall(path.read_text()):
                found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def configuration_table() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|"))


def documented(name: str, table: str) -> bool:
    """In a table cell as itself, or, for an f-string's head, as ``<HEAD><SOMETHING>…``."""
    if name.endswith("_"):
        return re.search(re.escape(name) + r"<[A-Z]+>", table) is not None
    return re.search(r"`" + re.escape(name) + r"`", table) is not None


def test_the_scan_finds_the_settings_it_must():
    found = names_in_code()
    # a plain read, a read with a default through settings, an f-string's head
    assert {"VIGIE_DATA_DIR", "VIGIE_WORKER_NAME", "VIGIE_RECOVERY_SLA_"} <= set(found)
    assert not documented("VIGIE_NOT_A_SETTING", configuration_table())


def test_every_setting_the_code_reads_is_in_the_readme_table():
    table = configuration_table()
    missing = {name: where for name, where in names_in_code().items()
               if not documented(name, table)}
    assert not missing, f"not in README.md's configuration table: {missing}"
